-- single.lua: the end of a one-algorithm rate-limit script (`prelude.lua`, one algorithm file,
-- a line naming it `algorithm`, then this): checks or peeks one limit of one key. A check of a
-- single limit, the common case, runs this lean script; `check.lua` serves several limits.
--
-- KEYS[1]  the limit's state key
-- ARGV     as `check.lua` with one limit: `check` or `peek`, the cost, the algorithm's name
--          (unused here: the script is that algorithm's), the limit, the window in
--          milliseconds, its parameter
-- Returns  the 5 integers of `check.lua` for one limit, as one string separated by spaces
--          (one bulk reply is cheaper to send and read than an array).
-- Time is the server's (TIME). Atomicity: one key, one script: decided and consumed together.
local cost = ARGV[2] + 0
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local allowed, limit, remaining, reset, retry = algorithm(KEYS[1], now, ARGV[4] + 0,
  ARGV[5] * 1000, cost, ARGV[6] + 0, ARGV[1] == 'check' and cost > 0)
return string.format('%d %d %d %d %d', allowed and 1 or 0, limit, math.max(remaining, 0),
  math.ceil(reset / 1000), math.ceil(retry / 1000))
