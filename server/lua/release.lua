-- Release a spam session (CONTRACT §12): forward it now, as if it had not been flagged.
-- KEYS: 1 session
-- ARGV: 1 shard tag, 2 session id, 3 retention ms,
--       4 the lead.completed event id, 5 JSON [its destinations (suffix or [suffix, cond])],
--       6 the abandoned event id pattern (session id, number), 7 JSON [its destinations]
-- A completed session gets its lead.completed event, an abandoned one the lead.abandoned
-- of its last abandonment; an open one is unflagged and forwarded when it ends.
-- Returns 'released', 'not_spam' (never flagged, or released before) or 'gone'.
local tag, sid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local m = redis.call('HMGET', KEYS[1], 'status', 'site', 'spam', 'abandons')
if not m[1] then
  return 'gone'
end
if not m[3] then
  return 'not_spam'
end
local now = now_ms()
local site = m[2]
redis.call('HDEL', KEYS[1], 'spam')
redis.call('HSET', KEYS[1], 'released', now, 'released_from', m[3])
redis.call('ZREM', tag .. 'idx:' .. site .. ':spam', sid)
count(tag, site, now, 'released', ttl)
if m[1] == 'completed' then
  emit(tag, sid, site, 'lead.completed', ARGV[4], now, ttl, cjson.decode(ARGV[5]))
elseif m[1] == 'abandoned' then
  local number = tonumber(m[4]) or 1
  emit(tag, sid, site, 'lead.abandoned', string.format(ARGV[6], sid, number), now, ttl,
    cjson.decode(ARGV[7]))
end
return 'released'
