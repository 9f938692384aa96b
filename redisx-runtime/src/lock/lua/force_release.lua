-- force_release.lua: delete a lock whoever holds it (an administrator's call), and tell the
-- waiters.
--
-- KEYS[1]  the lock key
-- ARGV[1]  the lock's release channel (`{lock key}:released`)
-- ARGV[2]  the message published on it when a lock was removed
-- Returns  1 when a lock was removed, 0 when the key did not exist.
-- Atomicity: one key; the DEL and the PUBLISH run as one script. The fence counter stays, so
-- the next holder's token is still larger than the removed holder's.
if redis.call('DEL', KEYS[1]) == 1 then
  redis.call('PUBLISH', ARGV[1], ARGV[2])
  return 1
end
return 0
