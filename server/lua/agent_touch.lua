-- Keep a connected agent's hold (a hold lapses HOLD_MS after its last touch).
-- KEYS: 1 session
-- ARGV: 1 agent id
-- Returns 1 (still held by this agent) or 0 (not any more).
local m = redis.call('HMGET', KEYS[1], 'agent', 'agent_seen')
local now = now_ms()
if holder(m[1], m[2], now) ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'agent_seen', now)
return 1
