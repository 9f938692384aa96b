-- sem_extend.lua: renew a semaphore lease this caller still holds (auto-renewal,
-- `Permit::extend`).
--
-- KEYS[1]  the semaphore's leases (sorted set of owner tokens by expiry in server ms)
-- KEYS[2]  its fence counter (the same hash tag, so the same cluster slot)
-- ARGV[1]  the caller's owner token
-- ARGV[2]  the new lease ttl in milliseconds
-- ARGV[3]  the counter's new ttl in milliseconds (longer than the lease's)
-- Returns  1 when the lease was live and now ends ARGV[2] ms from now; 0 otherwise (it
--          expired or was removed: the holder has lost its permit, which may be another's now).
-- Atomicity: two keys in one slot, one script: an expired lease is never revived.
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now_ms then
  if score then
    redis.call('ZREM', KEYS[1], ARGV[1])
  end
  return 0
end
redis.call('ZADD', KEYS[1], 'XX', now_ms + tonumber(ARGV[2]), ARGV[1])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], last[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return 1
