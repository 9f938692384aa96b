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
-- counter by `next_fence` (`fence.lua`, concatenated before this file, says what it
-- guarantees).
-- Atomicity: three keys in one slot, one script: the lock is taken and its token handed out
-- together, so no two holders ever carry the same token; a caller found the lock held and
-- flagged itself before any release could miss it.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  if ARGV[4] == '1' then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[3])
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
return {1, next_fence(KEYS[2], redis.call('TIME'), ARGV[3])}
