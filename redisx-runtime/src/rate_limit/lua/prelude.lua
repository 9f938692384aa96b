-- prelude.lua: the start of the rate-limit script (`check.lua` is its end; the algorithm files
-- sit between). Declares the algorithm table each algorithm file adds its function to, and the
-- helpers they share.
--
-- Every algorithm is `ALGORITHMS.<name>(key, now, limit, window, cost, param)` with `now` and
-- `window` in microseconds of server time, and returns the decision for `cost` points without
-- writing anything: allowed, limit, left (points left before the cost), left_after (after it),
-- reset and reset_after (microseconds when the quota is whole again, before and after the
-- cost), retry (microseconds until `cost` points can be admitted; 0 when allowed) and commit
-- (a function that consumes the cost).
local ALGORITHMS = {}

-- An integer as Redis reads it (Lua's default number format turns 16 digits into exponents).
local function int(x)
  return string.format('%d', x)
end
