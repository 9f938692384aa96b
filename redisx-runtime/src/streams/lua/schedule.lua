-- schedule.lua: adds a delayed publish to a stream's delayed set, due at the server's time
-- plus a delay (`publish_in`); the stream's consumers move it in when due (promote.lua).
--
-- KEYS[1]  the delayed set, `{app prefix}stream:{<name>}:delayed`
-- ARGV[1]  the delay in milliseconds
-- ARGV[2]  the delayed member: a nonce, then the entry's fields as netstrings (see fields.rs)
-- Returns  the due time (the member's score): ms since the epoch by the server's clock.
-- Atomicity: one key; the clock is read where the member is added, so the due time is the
--          server's whatever the publisher's clock says.
local t = redis.call('TIME')
local due = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
redis.call('ZADD', KEYS[1], due, ARGV[2])
return due
