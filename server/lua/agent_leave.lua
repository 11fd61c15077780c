-- An agent gives a session back to the bot, which asks the next unanswered step.
-- KEYS: 1 session, 2 transcript
-- ARGV: 1 session id, 2 agent id, 3 the bot's entries as JSON (the step's question)
-- Returns {"not_joined"} or {"ok", seq}.
local sid, me = ARGV[1], ARGV[2]
local m = redis.call('HMGET', KEYS[1], 'status', 'seq', 'agent', 'bytes')
if not m[1] or m[3] ~= me then
  return {'not_joined'}
end
local seq = tonumber(m[2])
-- the name stays: a widget that missed the leave is told on its next resume
redis.call('HDEL', KEYS[1], 'agent', 'agent_seen')
if m[1] ~= 'completed' then
  local written
  seq, written = append(KEYS[2], cjson.decode(ARGV[3]), seq, now_ms())
  redis.call('HSET', KEYS[1], 'seq', seq, 'bytes', (tonumber(m[4]) or 0) + written)
end
nudge(KEYS[1], sid)
return {'ok', seq}
