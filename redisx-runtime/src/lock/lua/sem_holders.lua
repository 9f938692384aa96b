-- sem_holders.lua: count a semaphore's live leases.
--
-- KEYS[1]  the semaphore's leases (sorted set of owner tokens by expiry in server ms)
-- Returns  the number of leases that have not expired (by the server's clock).
-- Atomicity: one key, read only; the server's TIME and the count are read together.
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
return redis.call('ZCOUNT', KEYS[1], '(' .. now_ms, '+inf')
