-- retry.lua: acknowledges a failed entry and schedules its next attempt in the delayed set,
-- together, so the backoff holds no handler slot, cannot be claimed by another consumer, and
-- survives the death of any process.
--
-- KEYS[1]  the stream, `{app prefix}stream:{<name>}`
-- KEYS[2]  its delayed set, `{app prefix}stream:{<name>}:delayed` (the same hash tag, so the
--          same cluster slot)
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry id
-- ARGV[3]  the backoff in milliseconds
-- ARGV[4]  the delayed member: the entry's fields with `attempt` raised (see fields.rs)
-- Returns  1 when the entry was pending in the group (now acknowledged, its retry scheduled
--          at server time + backoff); 0 when it was not (acknowledged or claimed elsewhere):
--          nothing is scheduled.
-- Atomicity: two keys in one slot, one script: the entry is never both pending and scheduled,
-- nor neither.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[4])
return 1
