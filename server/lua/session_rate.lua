-- Admit one new session from a client network, under a token bucket shared by every
-- server process.
-- KEYS: 1 the network's bucket (hash: tokens, at ms, Redis clock)
-- ARGV: 1 bucket size (also the tokens refilled per period), 2 period ms
-- Returns 1 when admitted (a token taken), 0 when the bucket is empty.
local now = now_ms()
local size, period = tonumber(ARGV[1]), tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or size
tokens = math.min(size, tokens + (now - (tonumber(state[2]) or now)) * size / period)
if tokens < 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - 1), 'at', now)
redis.call('PEXPIRE', KEYS[1], period)
return 1
