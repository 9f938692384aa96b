#!lua flags=no-writes
-- inspect_semaphore.lua: read a semaphore's live leases, changing nothing (the ops surface,
-- `Ops::semaphore` and `Ops::held_semaphores`).
--
-- KEYS[1]  the semaphore's leases, `{app prefix}{lock prefix}sem:{<key>}`: a sorted set of
--          owner tokens scored by the lease's expiry (server time, in milliseconds)
-- KEYS[2]  its fence counter, `{app prefix}{lock prefix}sem:{<key>}:fence` (the same slot)
-- Returns  {fence counter ('' when it is missing), owner token, milliseconds left, owner
--          token, milliseconds left, ...}: the leases not expired by the server's clock,
--          soonest expiry first. Expired leases are skipped, not removed.
-- Read only (`no-writes`). Atomicity: one script: the server's TIME, the leases and the
-- counter are read together.
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local leases = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now_ms, '+inf', 'WITHSCORES')
local out = {redis.call('GET', KEYS[2]) or ''}
for i = 1, #leases, 2 do
  out[#out + 1] = leases[i]
  out[#out + 1] = math.floor(tonumber(leases[i + 1])) - now_ms
end
return out
