-- purge_dlq.lua: deletes a stream's dead-letter stream and says how many entries it held.
--
-- KEYS[1]  the dead-letter stream, `{app prefix}stream:{<name>}:dlq`
-- Returns  the number of entries deleted (0 when there was no dead-letter stream).
-- Atomicity: one key, one script: no dead letter added between the count and the delete is
-- lost uncounted. A script rather than MULTI/EXEC, so the ACL the plugin documents needs no
-- `+multi +exec`.
local n = redis.call('XLEN', KEYS[1])
redis.call('DEL', KEYS[1])
return n
