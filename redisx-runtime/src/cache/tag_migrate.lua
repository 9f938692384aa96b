-- tag_migrate.lua: turn a tag index written before indexes were sorted sets (a plain set of
-- user keys) into the sorted set the cache writes now, keeping every member.
--
-- A write that meets such an index (WRONGTYPE on its ZADD) runs this once, then indexes its
-- entry again.
--
-- KEYS[1]  the tag index ({prefix}_tag:{tag})
-- ARGV[1]  for an old index without a ttl: how long its members' entries may still live, in
--          milliseconds (the caller's longest entry lifetime). An old index has a ttl of at
--          least its longest entry's remaining life (every write extended it so), so its
--          members are scored to end with the index: the server's time plus its ttl. None
--          of them is pruned while its entry may still live.
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
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local ends
if pttl > 0 then
  ends = now + pttl
else
  ends = now + tonumber(ARGV[1])
end
local score = string.format('%d', ends)
redis.call('DEL', KEYS[1])
for i = 1, #members, 1000 do
  local args = {}
  for j = i, math.min(i + 999, #members) do
    args[#args + 1] = score
    args[#args + 1] = members[j]
  end
  redis.call('ZADD', KEYS[1], unpack(args))
end
if pttl > 0 then
  redis.call('PEXPIRE', KEYS[1], pttl)
end
return #members
