-- Give back one connection slot (see slot.lua).
-- KEYS: 1 the slot set
-- ARGV: 1 connection id
-- Returns 1 when the lease was there, 0 when it had lapsed already.
return redis.call('ZREM', KEYS[1], ARGV[1])
