-- Queue a delivered or dead event for delivery again (same id, attempts kept).
-- KEYS: 1 shard outbox, 2 event, 3 session events
-- ARGV: 1 event id, 2 retention ms
-- Returns "ok", "pending" (already queued) or "missing".
local status = redis.call('HGET', KEYS[2], 'status')
if not status then
  return 'missing'
end
if status == 'pending' then
  return 'pending'
end
local now = now_ms()
redis.call('HSET', KEYS[2], 'status', 'pending', 'next', now)
redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], now, ARGV[1])
if not redis.call('LPOS', KEYS[3], ARGV[1]) then
  redis.call('RPUSH', KEYS[3], ARGV[1])
  redis.call('PEXPIRE', KEYS[3], tonumber(ARGV[2]))
end
return 'ok'
