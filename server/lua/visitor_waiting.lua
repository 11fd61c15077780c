-- A visitor has waited the site's agent_wait with no agent (CONTRACT §10): write one
-- visitor.waiting event per wait (a wait is named by its first unanswered message,
-- `wait_from`, which visitor.lua sets and an agent's message clears).
-- KEYS: 1 session
-- ARGV: 1 session id, 2 retention ms, 3 shard tag, 4 agent_wait ms,
--       5 event id pattern (keys.WAITING_EVENT), 6 destinations as JSON (see emit)
-- Returns 1 when the event was written, else 0 (no wait, not long yet, held, done).
local sid, ttl, tag = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local m = redis.call('HMGET', KEYS[1], 'status', 'site', 'agent', 'agent_seen', 'wait_from',
  'waited', 'waits')
local now = now_ms()
local since = tonumber(m[5])
if m[1] ~= 'open' or not since or m[5] == m[6] or now - since < tonumber(ARGV[4])
    or holder(m[3], m[4], now) ~= '' then
  return 0
end
local number = (tonumber(m[7]) or 0) + 1
redis.call('HSET', KEYS[1], 'waited', m[5], 'waits', number)
emit(tag, sid, m[2], 'visitor.waiting', string.format(ARGV[5], sid, number), now, ttl,
  cjson.decode(ARGV[6]))
return 1
