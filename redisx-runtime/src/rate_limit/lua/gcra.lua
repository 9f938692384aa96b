-- gcra.lua: the generic cell rate algorithm (part of the rate-limit script), as redis-cell.
--
-- State: one string, the theoretical arrival time (TAT, µs, a float) of the next point,
-- expiring when it is reached (an absent key is a full burst). One point is emitted every
-- T = window / limit; `param` is the burst (0: the limit): a burst of B admits exactly B
-- points at once, then one per T. The reported limit is the burst. A tolerance of 1 µs
-- absorbs float rounding at the exact boundary.
local function gcra(key, now, limit, window, cost, param, write)
  local burst = limit
  if param > 0 then
    burst = param
  end
  local T = window / limit
  local tat = math.max(tonumber(redis.call('GET', key) or '0') or 0, now)
  local new_tat = tat + cost * T
  local allow_at = new_tat - burst * T
  local left = math.max(math.floor((now + burst * T - tat + 1) / T), 0)
  if allow_at <= now + 1 then
    if write then
      redis.call('SET', key, string.format('%.17g', new_tat),
        'PX', int(math.ceil((new_tat - now) / 1000) + 1))
      return true, burst, math.max(math.floor((now + burst * T - new_tat + 1) / T), 0), new_tat, 0
    end
    return true, burst, left, tat, 0
  end
  return false, burst, left, tat, math.max(math.ceil(allow_at - now), 1)
end
