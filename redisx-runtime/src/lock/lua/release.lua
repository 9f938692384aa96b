-- release.lua: give a lock up if this caller still holds it, and tell the waiters.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the caller's owner token
-- ARGV[2]  the lock's release channel (`{lock key}:released`)
-- ARGV[3]  the message published on it (`{releasing runtime id}:{released holder's fencing
--          token}`: a runtime skips its own messages)
-- Returns  1 when the key held ARGV[1] and was deleted; 0 otherwise (it expired, or another
--          owner holds it now: that owner's key is left untouched).
-- Atomicity: one key; the compare, the DEL and the PUBLISH run as one script, so another
-- owner's lock is never deleted.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
