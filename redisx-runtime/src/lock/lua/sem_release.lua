-- sem_release.lua: give a semaphore permit back if this caller's lease is still live, and
-- tell the waiters.
--
-- KEYS[1]  the semaphore's leases (sorted set of owner tokens by expiry in server ms)
-- KEYS[2]  its waiters flag (see sem_acquire.lua): the message goes out only when it was set
-- ARGV[1]  the caller's owner token
-- ARGV[2]  the semaphore's release channel (`{leases key}:released`)
-- ARGV[3]  the message published on it (`{releasing runtime id}:{released holder's fencing
--          token}`: a runtime skips its own messages)
-- Returns  1 when the lease was live and is removed; 0 otherwise (it expired or was removed:
--          an expired lease is cleared without a message, its permit was already free).
-- Atomicity: two keys in one slot; the check, the ZREM and the PUBLISH run as one script.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then
  return 0
end
redis.call('ZREM', KEYS[1], ARGV[1])
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
if tonumber(score) <= now_ms then
  return 0
end
if redis.call('DEL', KEYS[2]) == 1 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return 1
