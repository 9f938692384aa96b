-- flag_waiter.lua: tell the holder of a regeneration lock that a caller waits for its write.
--
-- A lock marker is 17 bytes: 0xFE and a 16-byte token. A waiter appends "w"; the holder's
-- write (write.lua) and release (release.lua) publish a wake-up only when the flag is there,
-- so a load nobody waits for costs no pub/sub traffic.
--
-- KEYS[1]  the full entry key
-- ARGV     none
-- Returns  1 if the key holds a lock marker (now flagged), 0 otherwise (the entry was filled
--          or the lock released: re-read at once).
-- Atomicity: one key; the check and the APPEND (which keeps the key's ttl) run as one script.
local v = redis.call('GET', KEYS[1])
if not v or string.byte(v, 1) ~= 254 then
  return 0
end
if #v == 17 then
  redis.call('APPEND', KEYS[1], 'w')
end
return 1
