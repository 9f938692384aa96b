-- renew.lua: extends the lease of a claim while its body runs.
--
-- KEYS[1]  the record, `{app prefix}idem:{key}`
-- ARGV[1]  the owner token of the claim
-- ARGV[2]  the lease in milliseconds (the lock ttl)
-- Returns  1 when the claim is still the caller's and its lease now ends a lease from now
--          (the record expires after two); 0 when the record is gone, finished or taken over.
-- Atomicity: one key, one script: a lease is never extended for an owner that lost it.
local r = redis.call('HMGET', KEYS[1], 'state', 'owner')
if r[1] ~= 'processing' or r[2] ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = tonumber(ARGV[2])
redis.call('HSET', KEYS[1], 'lease_until', now + lease)
redis.call('PEXPIRE', KEYS[1], lease * 2)
return 1
