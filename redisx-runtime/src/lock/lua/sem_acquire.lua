-- sem_acquire.lua: take one of a semaphore's permits if one is free, and hand out its
-- fencing token.
--
-- KEYS[1]  the semaphore's leases, `{app prefix}lock:sem:{<key>}`: a sorted set of owner
--          tokens scored by the lease's expiry (server time, in milliseconds)
-- KEYS[2]  its fence counter, `{app prefix}lock:sem:{<key>}:fence` (the same hash tag, so
--          the same cluster slot)
-- ARGV[1]  the caller's owner token (random, 128 bits in hex)
-- ARGV[2]  the lease ttl in milliseconds
-- ARGV[3]  the permits: at most this many unexpired leases at once
-- KEYS[3]  its waiters flag, `{app prefix}lock:sem:{<key>}:waiters` (the same slot), set
--          when a caller that will wait finds every permit held (see acquire.lua)
-- ARGV[4]  the counter's ttl in milliseconds (the lease ttl plus a long grace); also the
--          waiters flag's ttl
-- ARGV[5]  '1' when the caller will wait for a permit (retries), '0' for a single try
-- Returns  {1, fencing token} when a permit was taken; {0, milliseconds until the earliest
--          lease expires} when every permit is held.
-- Expired leases (holders that died or stopped renewing) are removed first, so their permits
-- are free again. The set expires with its longest lease, so an idle semaphore leaves nothing.
-- The fencing token is max(counter + 1, server TIME in microseconds), as for a lock
-- (`next_fence`, from `fence.lua`, concatenated before this file).
-- Atomicity: three keys in one slot, one script: the count, the lease and the token are
-- decided together, so no more than ARGV[3] leases are ever live and no two carry the same
-- token.
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  if ARGV[5] == '1' then
    redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
  end
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, tonumber(first[2]) - now_ms}
end
local expiry = now_ms + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
return {1, next_fence(KEYS[2], t, ARGV[4])}
