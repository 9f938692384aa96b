-- delconsumer.lua: removes a consumer from its group only while it has nothing pending, so a
-- consumer that read messages since it was found idle keeps them.
--
-- KEYS[1]  the stream, `{app prefix}stream:{<name>}`
-- ARGV[1]  the consumer group
-- ARGV[2]  the consumer's name
-- Returns  0 when the consumer was removed (it had nothing pending); -1 when it has pending
--          entries now (nothing changes).
-- Atomicity: one key, one script: no read can add pending entries between the check and the
-- removal.
if #redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2]) > 0 then
  return -1
end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 0
