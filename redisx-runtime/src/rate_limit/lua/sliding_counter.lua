-- sliding_counter.lua: the sliding window counter algorithm (part of the rate-limit script).
--
-- State: a hash {w = the current window's index, c = points in it, p = points in the window
-- before}, expiring when both have left. The count of the sliding window is estimated as
-- p × (the share of the previous window still inside it) + c: O(1) memory per key, and
-- approximate. It never admits more than `limit` per aligned window; in a window-long interval
-- across two aligned windows it can admit more than `limit` when the previous window's points
-- were bunched at its end (at most 2 × limit), and it is exact for evenly spread traffic.
ALGORITHMS.sliding_counter = function(key, now, limit, window, cost)
  local w = math.floor(now / window)
  local start = w * window
  local v = redis.call('HMGET', key, 'w', 'c', 'p')
  local sw, c, p = tonumber(v[1]), 0, 0
  if sw == w then
    c = tonumber(v[2]) or 0
    p = tonumber(v[3]) or 0
  elseif sw == w - 1 then
    p = tonumber(v[2]) or 0
  end
  local est = p * (1 - (now - start) / window) + c
  local d = {limit = limit}
  d.allowed = est + cost <= limit
  d.left = math.max(math.floor(limit - est), 0)
  d.left_after = math.max(math.floor(limit - est - cost), 0)
  if c > 0 then
    d.reset = start + 2 * window
  elseif p > 0 then
    d.reset = start + window
  else
    d.reset = now
  end
  d.reset_after = start + 2 * window
  d.retry = 0
  if not d.allowed then
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
    d.retry = math.max(math.ceil(at - now), 1)
  end
  d.commit = function()
    redis.call('HSET', key, 'w', int(w), 'c', int(c + cost), 'p', int(p))
    redis.call('PEXPIRE', key, int(math.ceil((start + 2 * window - now) / 1000)))
  end
  return d
end
