-- extend.lua: renew a lock this caller still holds (auto-renewal, `LockGuard::extend`).
--
-- KEYS[1]  the lock key
-- KEYS[2]  its fence counter (the same hash tag, so the same cluster slot)
-- ARGV[1]  the caller's owner token
-- ARGV[2]  the new lock ttl in milliseconds
-- ARGV[3]  the counter's new ttl in milliseconds (longer than the lock's)
-- Returns  1 when the key held ARGV[1] and its ttl was set; 0 otherwise (it expired, was
--          deleted, or another owner holds it: the holder has lost the lock).
-- Atomicity: two keys in one slot; the compare and both PEXPIREs run as one script, so
-- another owner's lock is never extended.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end
return 0
