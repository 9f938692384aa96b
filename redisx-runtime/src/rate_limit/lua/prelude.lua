-- prelude.lua: the start of the rate-limit script (`check.lua` is its end; the algorithm files
-- sit between). Holds what the algorithms share.
--
-- Every algorithm is a local function `(key, now, limit, window, cost, param, write)`, with
-- `now` and `window` in microseconds of server time. It decides on `cost` points and, when
-- `write` is true and they are admitted, consumes them. It returns five values: allowed, the
-- limit it reports, the points remaining (after the cost when it consumed), when the quota is
-- whole again (µs) and the wait before `cost` points can be admitted (µs, 0 when allowed).
-- The state is kept in as few commands as possible: a check is one script, and its time is
-- mostly the round trip.
-- Numeric strings (arguments, TIME, parsed state) are converted by arithmetic (`+ 0`): one
-- conversion, where `tonumber` makes two.

-- An integer as Redis reads it (Lua's default number format turns 16 digits into exponents).
local function int(x)
  return string.format('%d', x)
end

-- Stores a window's state `value` in `key`: expiring `expires_in` µs from now when the window's
-- first point starts it (`fresh`), keeping the expiry that start set otherwise.
local function store_window(key, value, fresh, expires_in)
  if fresh then
    redis.call('SET', key, value, 'PX', int(math.ceil(expires_in / 1000)))
  else
    redis.call('SET', key, value, 'KEEPTTL')
  end
end
