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
-- does (a limit that admits is not consumed when another denies). A single limit is decided
-- and consumed in one pass; several are decided first, then consumed in a second pass.
local cost = ARGV[2] + 0
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local n = #KEYS
local algorithms = {}
for i = 1, n do
  local name = ARGV[(i - 1) * 4 + 3]
  local f
  if name == 'fixed_window' then
    f = fixed_window
  elseif name == 'sliding_window' then
    f = sliding_window
  elseif name == 'sliding_counter' then
    f = sliding_counter
  elseif name == 'token_bucket' then
    f = token_bucket
  elseif name == 'gcra' then
    f = gcra
  else
    return redis.error_reply('ERR unknown rate limit algorithm ' .. tostring(name))
  end
  algorithms[i] = f
end
local out = {}
local function decide(write)
  local all = true
  for i = 1, n do
    local b = (i - 1) * 4 + 3
    local allowed, limit, remaining, reset, retry = algorithms[i](KEYS[i], now,
      ARGV[b + 1] + 0, ARGV[b + 2] * 1000, cost, ARGV[b + 3] + 0, write)
    local o = (i - 1) * 5
    out[o + 1] = allowed and 1 or 0
    out[o + 2] = limit
    out[o + 3] = math.max(remaining, 0)
    out[o + 4] = math.ceil(reset / 1000)
    out[o + 5] = math.ceil(retry / 1000)
    all = all and allowed
  end
  return all
end
local consume = ARGV[1] == 'check' and cost > 0
if n == 1 then
  decide(consume)
elseif decide(false) and consume then
  decide(true)
end
return out
