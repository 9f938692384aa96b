-- touch.lua: slide a fresh cache entry's expiry forward (sliding expiry, a read-and-extend).
--
-- The entry keeps its value, its tags and the length of its stale-while-revalidate and
-- stale-if-error windows: its stale_at, its expires_at and the key's Redis ttl all move by the
-- same amount, so that stale_at becomes ARGV[2]. The timestamps are in the envelope's header
-- (see envelope.rs): byte 1 the format (0x01 bincode, 0x02 json, plus 0x40 when a tag section
-- follows), bytes 2..9 stale_at and bytes 10..17 expires_at, unix ms, little endian.
--
-- KEYS[1]  the full entry key
-- ARGV[1]  now, unix ms (the caller's clock, which also wrote the entry's timestamps)
-- ARGV[2]  the new stale_at, unix ms (now + the ttl)
-- ARGV[3]  "1": return the whole rewritten entry; "0": only its header and tag section
-- Returns  nil when the key holds no fresh entry: missing, a regeneration lock marker,
--          anything that is not an entry, no Redis ttl, or past its stale_at (a stale entry is
--          not revived: its value is due for a reload);
--          else {bytes, pttl}: the rewritten entry (or its first bytes, per ARGV[3]) and the
--          key's new Redis ttl in milliseconds.
-- Atomicity: one key; the read, the checks and the rewrite run as one script, so a concurrent
-- write or invalidation is never undone by writing the old value back.
local cur = redis.call('GET', KEYS[1])
if not cur or #cur < 17 then
  return nil
end
local format = string.byte(cur, 1)
if format ~= 1 and format ~= 2 and format ~= 65 and format ~= 66 then
  return nil
end
local stale_at = struct.unpack('<I8', cur, 2)
local expires_at = struct.unpack('<I8', cur, 10)
if stale_at <= tonumber(ARGV[1]) then
  return nil
end
local pttl = redis.call('PTTL', KEYS[1])
if pttl < 0 then
  return nil
end
local delta = tonumber(ARGV[2]) - stale_at
local new_pttl = pttl + delta
if new_pttl < 1 then
  return nil
end
local new = string.sub(cur, 1, 1) .. struct.pack('<I8', stale_at + delta)
  .. struct.pack('<I8', expires_at + delta) .. string.sub(cur, 18)
redis.call('SET', KEYS[1], new, 'PX', string.format('%.0f', new_pttl))
if ARGV[3] == '1' then
  return {new, new_pttl}
end
-- The header and the tag section: the caller re-indexes the tags with the new end.
local last = 17
if format >= 64 then
  last = 18
  for _ = 1, string.byte(cur, 18) or 0 do
    last = last + 1 + (string.byte(cur, last + 1) or 0)
  end
end
return {string.sub(new, 1, last), new_pttl}
