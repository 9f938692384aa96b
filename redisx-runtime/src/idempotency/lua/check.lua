-- check.lua: check-and-lock. Claims an absent record, takes over one whose owner's lease ran
-- out, or answers what the record holds.
--
-- KEYS[1]  the record, `{app prefix}idem:{key}` (a hash)
-- ARGV[1]  the call's fingerprint (hex)
-- ARGV[2]  the caller's owner token (random, 128 bits in hex)
-- ARGV[3]  the lease in milliseconds (the lock ttl)
-- Returns  {'new'}                      claimed: the caller runs the body
--          {'takeover', previous owner}  claimed from an owner whose lease ran out
--          {'mismatch'}                 the record was made by a call with another fingerprint
--          {'processing', lease left}   a live owner runs it (milliseconds left on its lease);
--                                       the record's `waiters` count goes up by one
--          {'completed', outcome, result}  finished: replay (`ok` or `err`, the encoded value)
--          {'failed', reason, ttl left} the last attempt failed; a retry may run after the ttl
--          {'invalid'}                  the key holds a hash without a known state
-- A claim writes state `processing`, the fingerprint, the owner, `started_at` and
-- `lease_until` (server time, ms) and expires the record after two leases, so a record whose
-- owner died and that nobody retries goes away by itself.
-- Atomicity: one key, one script: of concurrent callers exactly one claims (or takes over).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local lease = tonumber(ARGV[3])
local r = redis.call('HMGET', KEYS[1], 'state', 'fingerprint', 'owner', 'lease_until',
  'outcome', 'result', 'reason')
local state = r[1]
if not state then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return {'invalid'}
  end
  redis.call('HSET', KEYS[1], 'state', 'processing', 'fingerprint', ARGV[1], 'owner', ARGV[2],
    'started_at', now, 'lease_until', now + lease)
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return {'new'}
end
if r[2] ~= ARGV[1] then
  return {'mismatch'}
end
if state == 'completed' then
  return {'completed', r[5] or 'ok', r[6] or ''}
end
if state == 'failed' then
  return {'failed', r[7] or '', redis.call('PTTL', KEYS[1])}
end
if state ~= 'processing' then
  return {'invalid'}
end
local until_ms = tonumber(r[4]) or 0
if until_ms > now then
  -- Marks the record as waited on: its finish publishes only then.
  redis.call('HINCRBY', KEYS[1], 'waiters', 1)
  return {'processing', until_ms - now}
end
redis.call('HSET', KEYS[1], 'owner', ARGV[2], 'lease_until', now + lease)
redis.call('HINCRBY', KEYS[1], 'takeovers', 1)
redis.call('PEXPIRE', KEYS[1], lease * 2)
return {'takeover', r[3] or ''}
