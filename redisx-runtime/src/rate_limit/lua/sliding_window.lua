-- sliding_window.lua: the sliding window log algorithm (part of the rate-limit script).
--
-- State: a sorted set of admitted points scored by their time (µs), members `{time}:{n}`
-- (unique within a microsecond), expiring one window after the last admission; a check drops
-- the points that left the window first. Exact: at most `limit` points in any window-long
-- interval. O(limit) memory per key. Denied hits are not recorded, so repeated denials never
-- push the unblock time back.
local function sliding_window(key, now, limit, window, cost, _, write)
  local since = now - window
  local used
  if write then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', int(since))
    used = redis.call('ZCARD', key)
  else
    used = redis.call('ZCOUNT', key, '(' .. int(since), '+inf')
  end
  if used + cost <= limit and write then
    local at = int(now)
    local batch = {}
    for i = 1, cost do
      batch[#batch + 1] = at
      batch[#batch + 1] = at .. ':' .. int(used + i)
      if #batch >= 200 or i == cost then
        redis.call('ZADD', key, unpack(batch))
        batch = {}
      end
    end
    redis.call('PEXPIRE', key, int(math.ceil(window / 1000)))
    return true, limit, limit - used - cost, now + window, 0
  end
  -- The quota is whole once the newest live point has left.
  local reset = now
  if used > 0 then
    reset = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2]) + window
  end
  if used + cost <= limit then
    return true, limit, limit - used, reset, 0
  end
  -- `cost` points fit once the (used + cost - limit) oldest live points have left.
  local k = used + cost - limit
  local hit
  if write then
    hit = redis.call('ZRANGE', key, k - 1, k - 1, 'WITHSCORES')
  else
    hit = redis.call('ZRANGEBYSCORE', key, '(' .. int(since), '+inf', 'WITHSCORES', 'LIMIT', k - 1, 1)
  end
  return false, limit, math.max(limit - used, 0), reset, math.max(tonumber(hit[2]) + window - now, 1)
end
