-- A lead completed from a client network (CONTRACT §12, max_leads_per_ip): count it in
-- a sliding hour shared by every server process.
-- KEYS: 1 the network's leads on one site (sorted set: session id -> when, Redis clock)
-- ARGV: 1 window ms, 2 the session id
-- Returns the leads in the window, this one included (a resend counts once).
local now = now_ms()
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZADD', KEYS[1], 'NX', now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], window)
return redis.call('ZCARD', KEYS[1])
