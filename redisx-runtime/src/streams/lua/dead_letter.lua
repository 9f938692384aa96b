-- dead_letter.lua: moves a pending entry to the dead-letter stream and acknowledges it,
-- together.
--
-- KEYS[1]  the stream, `{app prefix}stream:{<name>}`
-- KEYS[2]  its dead-letter stream, `{app prefix}stream:{<name>}:dlq` (the same slot)
-- ARGV[1]  the consumer group
-- ARGV[2]  the entry id
-- ARGV[3]  the dead-letter stream's approximate cap (`MAXLEN ~`)
-- ARGV[4..] the dead-letter entry's fields and values, alternating (see fields.rs)
-- Returns  the dead-letter entry's id when the entry was pending in the group; nil when it
--          was not (acknowledged or claimed elsewhere): nothing is written.
-- Atomicity: two keys in one slot, one script: an entry is never both pending and dead, nor
-- acknowledged without its dead-letter entry.
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return nil
end
return redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
