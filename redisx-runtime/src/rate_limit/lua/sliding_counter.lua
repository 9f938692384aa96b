-- sliding_counter.lua: the sliding window counter algorithm (part of the rate-limit script).
--
-- State: a string `{window index} {points in it} {points in the window before}`, expiring when
-- both have left (set when the window's first point is consumed, kept after). The count of the
-- sliding window is estimated as the previous window's points × the share of it still inside,
-- plus the current window's: O(1) memory per key, and approximate. It never admits more than
-- `limit` per aligned window; in a window-long interval across two aligned windows it can
-- admit more than `limit` when the previous window's points were bunched at its end (at most
-- 2 × limit), and it is exact for evenly spread traffic.
local function sliding_counter(key, now, limit, window, cost, _, write)
  local w = math.floor(now / window)
  local start = w * window
  local c, p = 0, 0
  local v = redis.call('GET', key)
  if v then
    local sw, sc, sp = string.match(v, '^(%d+) (%d+) (%d+)$')
    sw = sw and sw + 0
    if sw == w then
      c, p = sc + 0, sp + 0
    elseif sw == w - 1 then
      p = sc + 0
    end
  end
  local est = p * (1 - (now - start) / window) + c
  if est + cost <= limit then
    if write then
      local value = int(w) .. ' ' .. int(c + cost) .. ' ' .. int(p)
      store_window(key, value, c == 0, start + 2 * window - now)
      return true, limit, math.max(math.floor(limit - est - cost), 0), start + 2 * window, 0
    end
  end
  local reset = now
  if c > 0 then
    reset = start + 2 * window
  elseif p > 0 then
    reset = start + window
  end
  local left = math.max(math.floor(limit - est), 0)
  if est + cost <= limit then
    return true, limit, left, reset, 0
  end
  local at
  if c + cost <= limit and p > 0 then
    -- Later in this window, once enough of the previous window's weight has gone.
    at = start + window * (1 - (limit - c - cost) / p)
  else
    -- In the next window, where this window's points weigh as the previous ones.
    local e = 0
    if c > 0 then
      e = math.max(window * (1 - (limit - cost) / c), 0)
    end
    at = start + window + e
  end
  return false, limit, left, reset, math.max(math.ceil(at - now), 1)
end
