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
-- ARGV[4]  the invalidation channel of the cache prefix
-- ARGV[5]  the message to publish on it
-- Returns  1 if the entry was written; 0 if ARGV[1] was given and the key no longer holds it
--          (the lock expired, or an invalidation deleted or a newer write replaced the entry
--          while the value was loading: the possibly stale value must not be written back).
-- Publishes: always for an unconditional write (other instances drop their L1 copy); for a
-- write under a marker only when a waiter flagged it (flag_waiter.lua), since no instance can
-- hold an L1 copy of an entry that was missing.
-- Atomicity: one key. The compare, the write and the publish run as one script, so no reader
-- sees the value before the waiters are told, and a concurrent invalidation always wins.
local publish = true
if ARGV[1] ~= '' then
  if string.byte(ARGV[1], 1) == 254 then
    local cur = redis.call('GET', KEYS[1])
    if cur == ARGV[1] then
      publish = false
    elseif cur ~= ARGV[1] .. 'w' then
      return 0
    end
  elseif redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) ~= ARGV[1] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if publish then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
