-- token_bucket.lua: the token bucket algorithm (part of the rate-limit script).
--
-- State: a string `{tokens left (a float)} {when they were counted (µs)}`, expiring when the
-- bucket would be full again (an absent key is a full bucket). Capacity = limit; `param` is
-- the refill in tokens per millisecond (0: limit per window). The same rate serves check, peek
-- and state, since they all run this function.
local function token_bucket(key, now, limit, window, cost, param, write)
  local rate = limit / window
  if param > 0 then
    rate = param / 1000
  end
  local tokens = limit
  local v = redis.call('GET', key)
  if v then
    local t, ts = string.match(v, '^(%S+) (%d+)$')
    tokens = math.min(limit, t + math.max(now - ts, 0) * rate)
  end
  if tokens >= cost then
    if write then
      local left = tokens - cost
      redis.call('SET', key, string.format('%.17g', left) .. ' ' .. int(now),
        'PX', int(math.ceil((limit - left) / rate / 1000) + 1))
      return true, limit, math.floor(left + 1e-9), now + math.ceil((limit - left) / rate), 0
    end
    return true, limit, math.floor(tokens + 1e-9), now + math.ceil((limit - tokens) / rate), 0
  end
  return false, limit, math.floor(tokens + 1e-9), now + math.ceil((limit - tokens) / rate),
    math.max(math.ceil((cost - tokens) / rate), 1)
end
