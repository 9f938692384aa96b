-- sliding_window.lua: the sliding window log algorithm (part of the rate-limit script).
--
-- State: a sorted set of admitted points scored by their time (µs), members `{time}:{n}`
-- (unique within a microsecond), expiring one window after the last admission. Exact: at most
-- `limit` points in any window-long interval. O(limit) memory per key. Denied hits are not
-- recorded, so repeated denials never push the unblock time back.
ALGORITHMS.sliding_window = function(key, now, limit, window, cost)
  local since = '(' .. int(now - window)
  local used = redis.call('ZCOUNT', key, since, '+inf')
  local d = {limit = limit, left = math.max(limit - used, 0), left_after = limit - used - cost}
  d.allowed = used + cost <= limit
  d.reset = now
  if used > 0 then
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    d.reset = tonumber(newest[2]) + window
  end
  d.reset_after = now + window
  d.retry = 0
  if not d.allowed then
    -- `cost` points fit once the (used + cost - limit) oldest live points have left.
    local k = used + cost - limit
    local hit = redis.call('ZRANGEBYSCORE', key, since, '+inf', 'WITHSCORES', 'LIMIT', k - 1, 1)
    d.retry = math.max(tonumber(hit[2]) + window - now, 1)
  end
  d.commit = function()
    redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - window))
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
  end
  return d
end
