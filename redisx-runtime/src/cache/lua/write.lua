-- write.lua: store a cache entry and tell whoever needs to know, in one atomic step.
--
-- KEYS[1]  the full entry key
-- ARGV[1]  what the key must hold for the write to happen:
--          ""                 nothing required: write unconditionally (an explicit set)
--          a lock marker      (0xFE + 16-byte token) the regeneration lock this writer holds
--          an entry header    (the 17 bytes the entry started with when it was read) for a
--                             refresh of a stale entry under a separate lock
-- ARGV[2]  the envelope bytes to store
-- ARGV[3]  the Redis ttl in milliseconds (the entry's fresh + stale + stale-if-error window)
-- ARGV[4]  optional: the invalidation channel of the cache prefix
-- ARGV[5]  optional: the message to publish on it
-- Returns  1 if the entry was written;
--          2 if it was written under a lock marker that a waiter had flagged
--            (flag_waiter.lua) and no channel was given: the caller publishes the wake-up;
--          0 if ARGV[1] was given and the key no longer holds it (the lock expired, or an
--            invalidation deleted or a newer write replaced the entry while the value was
--            loading: the possibly stale value must not be written back).
-- Publishes: when ARGV[4] is given and the entry was written. The client gives it for an
-- unconditional write and a refresh (other instances drop their L1 copy), and leaves it out
-- for a write under a lock marker: no instance can hold an L1 copy of an entry that was
-- missing, and the common unflagged case then converts two arguments fewer.
-- Atomicity: one key. The compare, the write and the publish run as one script, so a
-- concurrent invalidation always wins.
local flagged = false
if ARGV[1] ~= '' then
  if string.byte(ARGV[1], 1) == 254 then
    local cur = redis.call('GET', KEYS[1])
    if cur ~= ARGV[1] then
      if cur == ARGV[1] .. 'w' then
        flagged = true
      else
        return 0
      end
    end
  elseif redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) ~= ARGV[1] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[4] then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
  return 1
end
if flagged then
  return 2
end
return 1
