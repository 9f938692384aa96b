-- extend.lua: keep a regeneration lock alive while its holder is still loading.
--
-- A load may take longer than the lock ttl. Its holder renews the lock every third of the
-- ttl (for up to the stampede wait timeout), so callers in other instances keep waiting for
-- its write instead of loading too, and a write under a marker (which needs the marker)
-- still lands.
--
-- KEYS[1]  the lock key: the entry key holding a lock marker, or a refresh lock key
-- ARGV[1]  the marker this caller holds (0xFE and a 16-byte token)
-- ARGV[2]  the new ttl of the lock in milliseconds
-- Returns  1 if the key held ARGV[1] (flagged by a waiter or not) and its ttl was set;
--          0 otherwise (an invalidation deleted it, it expired, or another caller holds the
--          key now): the holder stops renewing; a write under a lost marker will not land
--          (a refresh's write compares the entry's header instead, see write.lua).
-- Atomicity: one key; the compare and the PEXPIRE run as one script, so another caller's
-- lock or value is never extended.
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] or cur == ARGV[1] .. 'w' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
