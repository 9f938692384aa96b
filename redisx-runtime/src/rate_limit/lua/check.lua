-- check.lua: the end of the rate-limit script (`prelude.lua`, then the algorithm files, then
-- this): checks or peeks one or more limits of one key, all or nothing.
--
-- KEYS     one state key per limit, all with the call key's hash tag (one cluster slot)
-- ARGV[1]  `check` (consume when every limit admits) or `peek` (consume nothing)
-- ARGV[2]  the cost in points (0 reads the state)
-- ARGV[3..] per limit, 4 values: the algorithm's name, the limit, the window in milliseconds,
--          and its parameter (token bucket: refill tokens per millisecond, gcra: the burst;
--          0 for the default)
-- Returns  per limit, 5 integers: allowed (1/0), the limit (gcra: the burst), the points
--          remaining, when the quota is whole again (unix ms) and the wait before `cost`
--          points can be admitted (ms, 0 when allowed).
-- Time is the server's (TIME), never a client clock. Atomicity: one script over keys of one
-- slot: every limit is decided on the same state, and either all of them consume or none
-- does (a limit that admits is not consumed when another denies).
local mode = ARGV[1]
local cost = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local decisions = {}
local all = true
for i = 1, #KEYS do
  local b = 2 + (i - 1) * 4
  local algorithm = ALGORITHMS[ARGV[b + 1]]
  if not algorithm then
    return redis.error_reply('ERR unknown rate limit algorithm ' .. tostring(ARGV[b + 1]))
  end
  local d = algorithm(KEYS[i], now, tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]) * 1000, cost,
    tonumber(ARGV[b + 4]))
  decisions[i] = d
  all = all and d.allowed
end
local commit = mode == 'check' and all and cost > 0
local out = {}
for i = 1, #KEYS do
  local d = decisions[i]
  if commit then
    d.commit()
  end
  out[#out + 1] = d.allowed and 1 or 0
  out[#out + 1] = d.limit
  out[#out + 1] = math.max(commit and d.left_after or d.left, 0)
  out[#out + 1] = math.ceil((commit and d.reset_after or d.reset) / 1000)
  out[#out + 1] = math.ceil(d.retry / 1000)
end
return out
