-- tag_claim.lua: take the members of a tag index and delete the index, atomically.
--
-- KEYS[1]  the tag index ({prefix}_tag:{tag}): a sorted set of user keys, each scored by
--          when its entry ends in Redis (unix ms)
-- ARGV     none
-- Returns  { members, scores }: the user keys the index held (empty if it did not exist),
--          and their scores in the same order, so that a caller whose deletes fail can put
--          the index back exactly as it was.
-- Atomicity: one key. Members added after the claim land in a new index and survive this
-- invalidation (they were written after it started); none is lost between read and delete.
-- The caller then deletes the members that still carry the tag: tag_delete.lua, one call per
-- cluster slot.
local members = {}
local scores = {}
local flat = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #flat, 2 do
  members[#members + 1] = flat[i]
  scores[#scores + 1] = flat[i + 1]
end
if #members > 0 then
  redis.call('DEL', KEYS[1])
end
return { members, scores }
