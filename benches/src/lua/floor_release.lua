-- floor_release.lua: the raw compare-and-delete release of the `locks` suite's floor.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the caller's owner token
-- Returns  1 when the key held ARGV[1] and was deleted; 0 otherwise.
-- Atomicity: one key, one script: another owner's lock is never deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
