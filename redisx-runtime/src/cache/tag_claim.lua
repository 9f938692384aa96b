-- tag_claim.lua: take the member list of a tag index and delete the index, atomically.
--
-- KEYS[1]  the tag index set ({prefix}_tag:{tag})
-- ARGV     none
-- Returns  the members (user keys) the index held; empty if it did not exist.
-- Atomicity: one key. Members added after the claim land in a new index and survive this
-- invalidation (they were written after it started); none is lost between read and delete.
-- The caller then deletes the members that still carry the tag: tag_delete.lua, one call per
-- cluster slot.
local members = redis.call('SMEMBERS', KEYS[1])
if #members > 0 then
  redis.call('DEL', KEYS[1])
end
return members
