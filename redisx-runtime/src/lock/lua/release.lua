-- release.lua: give a lock up if this caller still holds it, and tell the waiters.
--
-- KEYS[1]  the lock key
-- KEYS[2]  its waiters flag (`{lock key}:waiters`, the same slot; see acquire.lua)
-- ARGV[1]  the caller's owner token
-- ARGV[2]  the lock's release channel (`{lock key}:released`)
-- ARGV[3]  the message published on it (`{releasing runtime id}:{released holder's fencing
--          token}`: a runtime skips its own messages)
-- Returns  1 when the key held ARGV[1] and was deleted; 0 otherwise (it expired, or another
--          owner holds it now: that owner's key is left untouched).
-- The message is published only when a waiter flagged itself since the last release (and
-- the flag is cleared): an uncontended release publishes nothing, which on a cluster saves a
-- message broadcast to every node.
-- Atomicity: two keys in one slot; the compare, the DEL and the PUBLISH run as one script, so
-- another owner's lock is never deleted and a flagged waiter is always told.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  -- The lock key exists (it was just read), so 2 deleted means the waiters flag was set.
  if redis.call('DEL', KEYS[1], KEYS[2]) == 2 then
    redis.call('PUBLISH', ARGV[2], ARGV[3])
  end
  return 1
end
return 0
