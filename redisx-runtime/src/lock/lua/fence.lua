-- fence.lua: the start of `acquire.lua` and `sem_acquire.lua` (concatenated before each; see
-- `scripts.rs`): the fencing token both hand out.
--
-- next_fence(counter_key, t, ttl_ms) returns the token of an acquire at server time `t` (the
-- reply of TIME): max(counter + 1, `t` in microseconds), stored back in `counter_key` with a
-- ttl of `ttl_ms`. Tokens strictly increase per counter; as long as the server clock moves
-- forward, they also increase across a restart without persistence or a failover to a replica
-- whose counter is stale (where the counter is gone or behind, the clock carries on).
-- The clock is ahead of the counter on almost every acquire: it is stored and the old value
-- read in one command, and counter + 1 is written over it only when the counter was not behind.
-- Atomicity: it runs inside the acquiring script, with the lock or lease it fences.
local function next_fence(counter_key, t, ttl_ms)
  local now = t[1] * 1000000 + t[2]
  local counter = tonumber(redis.call('SET', counter_key, string.format('%d', now), 'PX', ttl_ms, 'GET') or '0') or 0
  if counter < now then
    return now
  end
  redis.call('SET', counter_key, string.format('%d', counter + 1), 'PX', ttl_ms)
  return counter + 1
end
