-- del_if_eq.lua: delete a key only while it still holds an expected value.
--
-- Used to remove a corrupt cache entry without racing a writer that replaced it meanwhile.
--
-- KEYS[1]  the full cache key
-- ARGV[1]  the exact bytes the caller read (and found corrupt)
-- Returns  1 if the key held ARGV[1] and was deleted, 0 otherwise.
-- Atomicity: one key; the compare and the delete run as one script, so a concurrent SET is
-- never deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
