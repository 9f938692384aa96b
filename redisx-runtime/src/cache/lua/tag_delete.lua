-- tag_delete.lua: delete the entries that still carry one of the invalidated tags.
--
-- KEYS      full entry keys, all in one cluster slot (the caller groups them by slot)
-- ARGV      the tags being invalidated
-- Returns   { deleted, missing }: the positions (1-based) in KEYS of the keys deleted, and
--           of the keys that did not exist (the caller still tells other instances to drop
--           any L1 copy of those).
-- An entry is deleted when
--   * it holds a lock marker (0xFE and a token): a load in progress loses to the
--     invalidation, exactly as it would to a delete, so its value is never written back;
--   * its tag section names one of the tags. The section follows the 17-byte header when
--     bit 0x40 of the format byte is set: one count byte, then per tag a length byte and the
--     tag's bytes (see envelope.rs); or
--   * it has no tag section (the format before sections): it is deleted as it always was.
-- An entry rewritten since it was indexed, without these tags, stays. A value that is not a
-- string is skipped. Only the header, the count and at most 129 bytes per tag are read.
-- Atomicity: one cluster slot. Each key is read and deleted in the same script, so a write
-- that lands before it is judged by its own tags and one that lands after it survives.
local wanted = {}
for i = 1, #ARGV do
  wanted[ARGV[i]] = true
end
local deleted = {}
local missing = {}
for i = 1, #KEYS do
  local head = redis.pcall('GETRANGE', KEYS[i], 0, 17)
  local hit = false
  if type(head) == 'string' then
    if #head == 0 then
      missing[#missing + 1] = i
    else
      local format = string.byte(head, 1)
      if format == 254 or format % 128 < 64 then
        hit = true
      elseif #head == 18 then
        local count = string.byte(head, 18)
        if count > 0 then
          local section = redis.call('GETRANGE', KEYS[i], 18, 17 + count * 129)
          local pos = 1
          for _ = 1, count do
            local len = string.byte(section, pos)
            if not len then
              break
            end
            if wanted[string.sub(section, pos + 1, pos + len)] then
              hit = true
              break
            end
            pos = pos + 1 + len
          end
        end
      end
    end
  end
  if hit then
    redis.call('UNLINK', KEYS[i])
    deleted[#deleted + 1] = i
  end
end
return { deleted, missing }
