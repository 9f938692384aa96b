-- finish.lua: completes or fails a claim, and wakes the duplicates waiting for it.
--
-- KEYS[1]  the record, `{app prefix}idem:{key}`
-- ARGV[1]  the owner token of the claim
-- ARGV[2]  the new state: `completed` or `failed`
-- ARGV[3]  the record's ttl from now, in milliseconds (the record ttl, or the lock ttl for a
--          failure)
-- ARGV[4]  completed: the outcome, `ok` or `err`; failed: empty
-- ARGV[5]  completed: the encoded result; failed: empty
-- ARGV[6]  failed: the reason (`error`, `cancelled`, ...); completed: empty
-- ARGV[7]  the completion channel, `{app prefix}idem:@done`
-- Returns  1 when the record was the caller's claim and now holds the outcome (the record's
--          key is published on the channel when a duplicate waits for it: its `waiters` count,
--          raised by check.lua, is above zero); 0 when it is gone, finished or taken over (then
--          nothing changes).
-- Atomicity: one key, one script: only the claim's owner finishes it, once.
local r = redis.call('HMGET', KEYS[1], 'state', 'owner', 'waiters')
if r[1] ~= 'processing' or r[2] ~= ARGV[1] then
  return 0
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'completed_at', now, 'outcome', ARGV[4],
  'result', ARGV[5], 'reason', ARGV[6])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if tonumber(r[3] or '0') > 0 then
  redis.call('PUBLISH', ARGV[7], KEYS[1])
end
return 1
