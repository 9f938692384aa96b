-- fixed_window.lua: the fixed window algorithm (part of the rate-limit script).
--
-- State: a string `{window index} {points consumed}`, expiring at the window's end (set when
-- the window's first point is consumed, kept after). Windows are aligned on the epoch, so
-- every instance agrees on them. Denied hits are not counted: a client that keeps knocking
-- while denied is admitted again as soon as the next window starts, and `current` never
-- exceeds the limit.
local function fixed_window(key, now, limit, window, cost, _, write)
  local w = math.floor(now / window)
  local ends = (w + 1) * window
  local used = 0
  local v = redis.call('GET', key)
  if v then
    local sw, sc = string.match(v, '^(%d+) (%d+)$')
    if sw and sw + 0 == w then
      used = sc + 0
    end
  end
  if used + cost <= limit then
    if write then
      store_window(key, int(w) .. ' ' .. int(used + cost), used == 0, ends - now)
      return true, limit, limit - used - cost, ends, 0
    end
    return true, limit, limit - used, used > 0 and ends or now, 0
  end
  return false, limit, math.max(limit - used, 0), used > 0 and ends or now, ends - now
end
