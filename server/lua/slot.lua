-- Take one connection slot under a cap shared by every server process.
-- KEYS: 1 the slot set (sorted set: connection id -> lease expiry, ms, Redis clock)
-- ARGV: 1 connection id, 2 cap, 3 lease ms
-- Leases that were not renewed (their process died) are dropped first, so a crashed
-- process frees its slots within one lease. Idempotent: taking a held slot renews it.
-- Returns 1 when the slot is taken, 0 when the cap is reached.
local now = now_ms()
local lease = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1])
    and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
redis.call('PEXPIRE', KEYS[1], lease)
return 1
