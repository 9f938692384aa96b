-- release.lua: give up a regeneration lock (the loader failed or was cancelled, or a refresh
-- finished) and wake the callers waiting for it, so that one of them takes over at once.
--
-- KEYS[1]  the lock key: the entry key holding a lock marker, or a refresh lock key
-- ARGV[1]  the marker this caller holds
-- ARGV[2]  the invalidation channel of the cache prefix
-- ARGV[3]  the message to publish when a waiter flagged the lock ("" = never publish)
-- Returns  1 if the key held ARGV[1] (flagged or not) and was deleted, 0 otherwise (the lock
--          expired or was taken over).
-- Atomicity: one key; compare-and-delete plus publish as one script, so another caller's lock
-- is never deleted.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
if cur == ARGV[1] .. 'w' then
  redis.call('DEL', KEYS[1])
  if ARGV[3] ~= '' then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
  return 1
end
return 0
