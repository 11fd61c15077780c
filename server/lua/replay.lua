-- Queue a delivered or dead event for delivery again (same id, attempts kept).
-- KEYS: 1 shard outbox, 2 event, 3 session events
-- ARGV: 1 event id, 2 retention ms, 3 the shard tag
-- A dead event queued again is no longer a dead letter of its destination: it leaves
-- health:<site>/<dest>:dead (see settle.lua), in the same step.
-- Returns "ok", "pending" (already queued) or "missing".
local status = redis.call('HGET', KEYS[2], 'status')
if not status then
  return 'missing'
end
if status == 'pending' then
  return 'pending'
end
local now = now_ms()
if status == 'dead' then
  local site = redis.call('HGET', KEYS[2], 'site') or ''
  redis.call('ZREM', health_key(ARGV[3], site, ARGV[1]) .. ':dead', ARGV[1])
end
redis.call('HSET', KEYS[2], 'status', 'pending', 'next', now)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
if not redis.call('LPOS', KEYS[3], ARGV[1]) then
  redis.call('RPUSH', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2]))
end
return 'ok'
