-- tag_delete.lua: delete the entries that still carry one of the invalidated tags.
--
-- KEYS     full entry keys, all in one cluster slot (the caller groups them by slot)
-- ARGV[1]  how many bytes of an entry to read: its header and the longest tag section
-- ARGV[2..] the tags being invalidated
-- Returns  the positions (1-based) in KEYS of the keys deleted.
-- An entry is deleted when
--   * it holds a lock marker (0xFE and a token): a load in progress loses to the
--     invalidation, exactly as it would to a delete, so its value is never written back; or
--   * its tag section names one of the tags. The section follows the 17-byte header when
--     bit 0x40 of the format byte is set: one count byte, then per tag a length byte and the
--     tag's bytes (see envelope.rs).
-- An entry rewritten since it was indexed, without these tags (or without any), stays. A
-- missing key or a value that is not a string is skipped.
-- Atomicity: one cluster slot. Each key is read and deleted in the same script, so a write
-- that lands before it is judged by its own tags and one that lands after it survives.
local wanted = {}
for i = 2, #ARGV do
  wanted[ARGV[i]] = true
end
local limit = tonumber(ARGV[1]) - 1
local deleted = {}
for i = 1, #KEYS do
  local v = redis.pcall('GETRANGE', KEYS[i], 0, limit)
  local hit = false
  if type(v) == 'string' and #v > 0 then
    local format = string.byte(v, 1)
    if format == 254 then
      hit = true
    elseif format % 128 >= 64 and #v >= 18 then
      local count = string.byte(v, 18)
      local pos = 19
      for _ = 1, count do
        local len = string.byte(v, pos)
        if not len then
          break
        end
        if wanted[string.sub(v, pos + 1, pos + len)] then
          hit = true
          break
        end
        pos = pos + 1 + len
      end
    end
  end
  if hit then
    redis.call('UNLINK', KEYS[i])
    deleted[#deleted + 1] = i
  end
end
return deleted
