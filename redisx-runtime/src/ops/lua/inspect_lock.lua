#!lua flags=no-writes
-- inspect_lock.lua: read a lock as it is now, changing nothing (the ops surface, `Ops::lock`
-- and `Ops::held_locks`).
--
-- KEYS[1]  the lock key, `{app prefix}{lock prefix}{<key>}`
-- KEYS[2]  its fence counter, `{app prefix}{lock prefix}{<key>}:fence` (the same hash tag,
--          so the same cluster slot)
-- Returns  false when nobody holds the lock; else {owner token, remaining ttl in
--          milliseconds (-1: the key has no expiry), fence counter ('' when it is missing)}.
-- Read only (`no-writes`: it also runs on a server out of memory). Atomicity: one script, so
-- the owner, its ttl and the counter are read together and belong to one holder (acquire.lua
-- sets the owner and the counter in one script, and nothing else changes the counter).
local owner = redis.call('GET', KEYS[1])
if not owner then
  return false
end
return {owner, redis.call('PTTL', KEYS[1]), redis.call('GET', KEYS[2]) or ''}
