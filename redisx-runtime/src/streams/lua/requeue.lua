-- requeue.lua: moves one dead-letter entry back into its stream as a first attempt.
--
-- KEYS[1]  the stream, `{app prefix}stream:{<name>}`
-- KEYS[2]  its dead-letter stream, `{app prefix}stream:{<name>}:dlq` (the same slot)
-- ARGV[1]  the dead-letter entry's id
-- ARGV[2]  the stream's approximate cap (`MAXLEN ~`)
-- ARGV[3..] the new entry's fields and values, alternating (the dead-letter entry's, without
--          its failure fields, `attempt` 1)
-- Returns  the new entry's id; nil when the dead-letter entry is gone (requeued or purged
--          meanwhile): nothing is added.
-- Atomicity: two keys in one slot, one script: an entry is requeued once.
if redis.call('XDEL', KEYS[2], ARGV[1]) == 0 then
  return nil
end
return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(ARGV, 3))
