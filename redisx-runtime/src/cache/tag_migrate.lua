-- tag_migrate.lua: turn a tag index written before indexes were sorted sets (a plain set of
-- user keys) into the sorted set the cache writes now, keeping every member.
--
-- A write that meets such an index (WRONGTYPE on its ZADD) runs this once, then indexes its
-- entry again.
--
-- KEYS[1]  the tag index ({prefix}_tag:{tag})
-- ARGV[1]  the score for the old members: when their entries end at the latest (unix ms;
--          the caller passes now plus the cache's longest entry lifetime, so none of them is
--          pruned while its entry may still live)
-- Returns  the number of members converted (0 if the key is not a plain set: already a
--          sorted set, or gone).
-- Atomicity: one key. The members are read, the set is deleted and the sorted set written
-- with the same members and the same ttl in one step, so no writer or invalidation sees the
-- index missing or half converted.
if redis.call('TYPE', KEYS[1]).ok ~= 'set' then
  return 0
end
local members = redis.call('SMEMBERS', KEYS[1])
local pttl = redis.call('PTTL', KEYS[1])
redis.call('DEL', KEYS[1])
for i = 1, #members, 1000 do
  local args = {}
  for j = i, math.min(i + 999, #members) do
    args[#args + 1] = ARGV[1]
    args[#args + 1] = members[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
if pttl > 0 then
  redis.call('PEXPIRE', KEYS[1], pttl)
end
return #members
