-- token_bucket.lua: the token bucket algorithm (part of the rate-limit script).
--
-- State: a hash {t = tokens left (a float), ts = when they were counted (µs)}, expiring when
-- the bucket would be full again (an absent key is a full bucket). Capacity = limit; `param`
-- is the refill in tokens per millisecond (0: limit per window). The same rate serves
-- check, peek and state, since they all run this function.
ALGORITHMS.token_bucket = function(key, now, limit, window, cost, param)
  local rate = limit / window
  if param > 0 then
    rate = param / 1000
  end
  local v = redis.call('HMGET', key, 't', 'ts')
  local tokens = limit
  if v[1] and v[2] then
    local elapsed = math.max(now - tonumber(v[2]), 0)
    tokens = math.min(limit, tonumber(v[1]) + elapsed * rate)
  end
  local d = {limit = limit}
  d.allowed = tokens >= cost
  d.left = math.floor(tokens + 1e-9)
  d.left_after = math.floor(tokens - cost + 1e-9)
  d.reset = now + math.ceil((limit - tokens) / rate)
  d.reset_after = now + math.ceil((limit - tokens + cost) / rate)
  d.retry = d.allowed and 0 or math.max(math.ceil((cost - tokens) / rate), 1)
  d.commit = function()
    redis.call('HSET', key, 't', string.format('%.17g', tokens - cost), 'ts', int(now))
    redis.call('PEXPIRE', key, int(math.ceil((limit - tokens + cost) / rate / 1000) + 1))
  end
  return d
end
