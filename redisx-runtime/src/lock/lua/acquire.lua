-- acquire.lua: take a lock if it is free, and hand out its fencing token.
--
-- KEYS[1]  the lock key, `{app prefix}lock:{<key>}`
-- KEYS[2]  its fence counter, `{app prefix}lock:{<key>}:fence` (the same hash tag, so the
--          same cluster slot)
-- ARGV[1]  the caller's owner token (random, 128 bits in hex)
-- ARGV[2]  the lock ttl in milliseconds
-- KEYS[3]  its waiters flag, `{app prefix}lock:{<key>}:waiters` (the same slot): set when a
--          caller that will wait finds the lock held, so that the release tells the waiters
--          and a release nobody waits for publishes nothing
-- ARGV[3]  the counter's ttl in milliseconds (the lock ttl plus a long grace: the counter
--          outlives the lock, and is renewed with it by extend.lua); also the waiters flag's
--          ttl (a flag left over costs one message, a missing one a wake-up)
-- ARGV[4]  '1' when the caller will wait for the lock (retries), '0' for a single try
-- Returns  {1, fencing token} when the lock was taken; {0, remaining ttl of the holder in
--          milliseconds} when another owner holds it.
-- The fencing token is max(counter + 1, server TIME in microseconds), stored back in the
-- counter: tokens strictly increase per key across holders, and, as long as the server clock
-- moves forward, across a restart without persistence or a failover to a replica whose
-- counter is stale (where the counter is gone or behind, the clock carries on).
-- Atomicity: three keys in one slot, one script: the lock is taken and its token handed out
-- together, so no two holders ever carry the same token; a caller found the lock held and
-- flagged itself before any release could miss it.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[4] == '1' then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
-- The clock is ahead of the counter on almost every acquire: store it and read the old value
-- in one command, and write counter + 1 over it only when the counter was not behind.
local counter = tonumber(redis.call('SET', KEYS[2], string.format('%d', now), 'PX', ARGV[3], 'GET') or '0') or 0
if counter < now then
  return {1, now}
end
redis.call('SET', KEYS[2], string.format('%d', counter + 1), 'PX', ARGV[3])
return {1, counter + 1}
