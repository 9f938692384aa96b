-- write.lua: store a cache entry and tell the other instances, in one atomic step.
--
-- KEYS[1]  the full entry key
-- ARGV[1]  the lock marker this writer holds, or "" to write unconditionally (an explicit set)
-- ARGV[2]  the envelope bytes to store
-- ARGV[3]  the Redis ttl in milliseconds (the entry's fresh + stale + stale-if-error window)
-- ARGV[4]  the invalidation channel of the cache prefix
-- ARGV[5]  the message to publish on it ("" = publish nothing)
-- Returns  1 if the entry was written; 0 if ARGV[1] was given and the key no longer holds it
--          (the lock expired, or an invalidation deleted it while the value was loading: the
--          possibly stale value must not be written back).
-- Atomicity: one key. The compare, the write and the publish run as one script, so no reader
-- sees the value before the waiters are told, and a concurrent invalidation always wins.
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
if ARGV[5] ~= '' then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return 1
