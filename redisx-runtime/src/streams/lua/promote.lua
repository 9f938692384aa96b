-- promote.lua: moves the due members of a delayed set into their stream (retries and delayed
-- publishes), run by whichever consumer of the stream gets there first.
--
-- KEYS[1]  the stream, `{app prefix}stream:{<name>}`
-- KEYS[2]  its delayed set, `{app prefix}stream:{<name>}:delayed` (the same slot)
-- KEYS[3]  its dead-letter stream, `{app prefix}stream:{<name>}:dlq` (the same slot)
-- ARGV[1]  the most members to move in one call
-- ARGV[2]  the stream's approximate cap (`MAXLEN ~`)
-- ARGV[3]  the dead-letter stream's approximate cap
-- Returns  {moved, ms until the next member is due (-1: none left), malformed}: a member that
--          does not parse (not written by redisx) goes to the dead-letter stream with an
--          `error`, never dropped.
-- Atomicity: three keys in one slot, one script: a member leaves the set exactly when its
-- entry is added, so concurrent movers never add it twice.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local moved, malformed = 0, 0
for _, m in ipairs(due) do
  -- A 16-character nonce, then netstrings `<len>:<bytes>,`.
  local fields, pos, ok = {}, 17, true
  while pos <= #m do
    local colon = string.find(m, ':', pos, true)
    local len = colon and tonumber(string.sub(m, pos, colon - 1))
    if not len or string.sub(m, colon + len + 1, colon + len + 1) ~= ',' then
      ok = false
      break
    end
    fields[#fields + 1] = string.sub(m, colon + 1, colon + len)
    pos = colon + len + 2
  end
  if ok and #fields >= 2 and #fields % 2 == 0 then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
    moved = moved + 1
  else
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'error',
      'a delayed message could not be parsed', 'data', m, 'failed_at', now)
    malformed = malformed + 1
  end
  redis.call('ZREM', KEYS[2], m)
end
local nxt = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #nxt == 0 then
  return {moved, -1, malformed}
end
local left = tonumber(nxt[2]) - now
if left < 0 then
  left = 0
end
return {moved, left, malformed}
