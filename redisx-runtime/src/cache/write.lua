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
-- ARGV[6]  the regeneration lock ttl in milliseconds (only read when a lock marker must be put
--          back, see below)
-- Returns  1 if the entry was written; 0 if ARGV[1] was given and the key no longer holds it
--          (the lock expired, or an invalidation deleted or a newer write replaced the entry
--          while the value was loading: the possibly stale value must not be written back).
-- Publishes: always for an unconditional write (other instances drop their L1 copy); for a
-- write under a marker only when a waiter flagged it (flag_waiter.lua), since no instance can
-- hold an L1 copy of an entry that was missing.
-- Atomicity: one key. The compare, the write and the publish run as one script, so no reader
-- sees the value before the waiters are told, and a concurrent invalidation always wins.
--
-- A write under a marker is one `SET .. XX GET` (the common case costs one command): it
-- writes only if the key exists, and returns what it replaced. If that was not this writer's
-- marker, the replaced value is put back before the script ends, so no reader ever sees the
-- write: another caller's lock marker (flag included) is restored with the lock ttl; an entry
-- written meanwhile (an explicit set) is restored to expire at its own expires_at (header bytes
-- 10..17, unix ms little endian), which drops only its stale-if-error tail; bytes that are
-- not an entry are deleted.
if ARGV[1] ~= '' then
  if string.byte(ARGV[1], 1) == 254 then
    local old = redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3], 'XX', 'GET')
    if old == ARGV[1] then
      return 1
    end
    if old == ARGV[1] .. 'w' then
      redis.call('PUBLISH', ARGV[4], ARGV[5])
      return 1
    end
    if old then
      if string.byte(old, 1) == 254 then
        redis.call('SET', KEYS[1], old, 'PX', ARGV[6])
      else
        local at = 0
        if #old >= 17 then
          for i = 17, 10, -1 do
            at = at * 256 + string.byte(old, i)
          end
        end
        local now = redis.call('TIME')
        if at > tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) then
          redis.call('SET', KEYS[1], old, 'PXAT', at)
        else
          redis.call('DEL', KEYS[1])
        end
      end
    end
    return 0
  end
  if redis.call('GETRANGE', KEYS[1], 0, #ARGV[1] - 1) ~= ARGV[1] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
