-- An agent takes a session over (CONTRACT §10): one holder at a time.
-- KEYS: 1 session
-- ARGV: 1 session id, 2 agent id, 3 agent name
-- Returns {"gone"}, {"closed"}, {"taken", holder id, holder name}, or
-- {"ok", seq, 1 when it was not held by this agent before}.
local sid, me, name = ARGV[1], ARGV[2], ARGV[3]
local m = redis.call('HMGET', KEYS[1], 'status', 'seq', 'agent', 'agent_seen', 'agent_name')
if not m[1] then
  return {'gone'}
end
if m[1] == 'completed' then
  return {'closed'}
end
local now = now_ms()
local held = holder(m[3], m[4], now)
if held ~= '' and held ~= me then
  return {'taken', held, m[5] or held}
end
redis.call('HSET', KEYS[1], 'agent', me, 'agent_name', name, 'agent_seen', now)
if held ~= me then
  nudge(KEYS[1], sid)
end
return {'ok', tonumber(m[2]), held ~= me and 1 or 0}
