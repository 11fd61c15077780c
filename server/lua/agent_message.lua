-- An agent's message: the whole state change in one step, like visitor.lua.
-- KEYS: 1 session, 2 transcript, 3 client ids, 4 shard deadlines
-- ARGV: 1 session id, 2 retention ms, 3 shard tag, 4 the message as JSON:
--       {"id": client frame id (namespaced by the agent), "agent": agent id,
--        "name": agent name, "text": text, "max": longest transcript,
--        "max_bytes": transcript byte cap}
-- Agent messages count as activity for abandonment while the agent holds the session.
-- Returns {"dup", seq}, {"gone"}, {"closed"}, {"not_joined"}, {"full"} or
-- {"ok", seq, now ms, when the visitor's wait this answers began (ms) or 0}.
local sid, ttl = ARGV[1], tonumber(ARGV[2])
local ev = cjson.decode(ARGV[4])
local m = redis.call('HMGET', KEYS[1], 'status', 'seq', 'agent', 'agent_seen', 'idle',
  'queued', 'bytes', 'wait_from')
if not m[1] then
  return {'gone'}
end
local seen = redis.call('HGET', KEYS[3], ev.id)
if seen then
  redis.call('HSET', KEYS[3], ev.id, seen)  -- rewritten so a WAIT after covers it
  return {'dup', tonumber(seen)}
end
if m[1] == 'completed' then
  return {'closed'}
end
local now = now_ms()
if holder(m[3], m[4], now) ~= ev.agent then
  return {'not_joined'}
end
local seq = tonumber(m[2])
if seq >= ev.max then
  return {'full'}
end
local entry = {from = {id = 'agent:' .. ev.agent, name = ev.name}, text = ev.text}
local written
seq, written = append(KEYS[2], {entry}, seq, now)
redis.call('HSET', KEYS[3], ev.id, seq)
local set = {'seq', seq, 'active', now, 'agent_seen', now,
  'bytes', (tonumber(m[7]) or 0) + written}
if m[1] == 'open' then
  move_deadline(set, KEYS[4], sid, now + tonumber(m[5]), m[6])
end
redis.call('HSET', KEYS[1], unpack(set))
redis.call('HDEL', KEYS[1], 'wait_from')
expire({KEYS[1], KEYS[2], KEYS[3]}, ttl)
nudge(KEYS[1], sid)
return {'ok', seq, now, tonumber(m[8]) or 0}
