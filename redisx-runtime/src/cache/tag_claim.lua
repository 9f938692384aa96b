-- tag_claim.lua: take the member list of a tag index and delete the index, atomically.
--
-- KEYS[1]  the tag index ({prefix}_tag:{tag}): a sorted set of user keys, each scored by
--          when its entry ends in Redis (unix ms); or, written before indexes were sorted
--          sets, a plain set of user keys
-- ARGV     none
-- Returns  the members (user keys) the index held; empty if it did not exist.
-- Atomicity: one key. Members added after the claim land in a new index and survive this
-- invalidation (they were written after it started); none is lost between read and delete.
-- The caller then deletes the members that still carry the tag: tag_delete.lua, one call per
-- cluster slot.
local kind = redis.call('TYPE', KEYS[1]).ok
local members
if kind == 'zset' then
  members = redis.call('ZRANGE', KEYS[1], 0, -1)
elseif kind == 'set' then
  members = redis.call('SMEMBERS', KEYS[1])
else
  return {}
end
if #members > 0 then
  redis.call('DEL', KEYS[1])
end
return members
