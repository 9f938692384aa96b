-- fixed_window.lua: the fixed window algorithm (part of the rate-limit script).
--
-- State: a hash {w = the window's index (now / window), c = points consumed in it}, expiring at
-- the window's end. Windows are aligned on the epoch, so every instance agrees on them.
-- Denied hits are not counted: a client that keeps knocking while denied is admitted again as
-- soon as the next window starts, and `current` never exceeds the limit.
ALGORITHMS.fixed_window = function(key, now, limit, window, cost)
  local w = math.floor(now / window)
  local ends = (w + 1) * window
  local v = redis.call('HMGET', key, 'w', 'c')
  local used = 0
  if tonumber(v[1]) == w then
    used = tonumber(v[2]) or 0
  end
  local d = {limit = limit, left = math.max(limit - used, 0), left_after = limit - used - cost}
  d.allowed = used + cost <= limit
  d.reset = used > 0 and ends or now
  d.reset_after = ends
  d.retry = d.allowed and 0 or (ends - now)
  d.commit = function()
    redis.call('HSET', key, 'w', int(w), 'c', int(used + cost))
    redis.call('PEXPIRE', key, int(math.ceil((ends - now) / 1000)))
  end
  return d
end
