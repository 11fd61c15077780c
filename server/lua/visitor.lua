-- One visitor event (message, field or submit): the whole state change in one step.
-- KEYS: 1 session, 2 fields, 3 transcript, 4 client ids, 5 events, 6 shard deadlines
-- ARGV: 1 session id, 2 client frame id, 3 seq the caller's view was built on,
--       4 visitor entry JSON or "", 5 bot entries JSON array, 6 field updates JSON object,
--       7 flow step after, 8 "1" if the session completes, 9 retention ms, 10 shard tag
-- Returns one of
--   {"dup", seq}         frame id already accepted: ack again with its seq
--   {"gone"}             no such session (expired or erased)
--   {"closed"}           session completed: read-only
--   {"stale", seq}       the caller's view is out of date: reload and retry
--   {"ok", ack seq, first bot seq, now ms, recovered 0|1}
local sid, cid, tag, ttl = ARGV[1], ARGV[2], ARGV[10], tonumber(ARGV[9])
local seen = redis.call('HGET', KEYS[4], cid)
if seen then
  return {'dup', tonumber(seen)}
end
local m = redis.call('HMGET', KEYS[1], 'status', 'seq', 'site', 'idle')
local status, seq, site = m[1], tonumber(m[2]), m[3]
if not status then
  return {'gone'}
end
if status == 'completed' then
  return {'closed'}
end
if seq ~= tonumber(ARGV[3]) then
  return {'stale', seq}
end
local now = now_ms()
local recovered = 0
if status == 'abandoned' then
  redis.call('HSET', KEYS[1], 'status', 'open', 'recovered', '1')
  count(tag, site, now, 'recovered', ttl)
  index(tag, site, 'recovered', now, sid, ttl)
  recovered = 1
end
if ARGV[4] ~= '' then
  seq = append(KEYS[3], {cjson.decode(ARGV[4])}, seq, now)
end
local ack = seq
local first = seq + 1
seq = append(KEYS[3], cjson.decode(ARGV[5]), seq, now)
if ARGV[4] == '' then
  ack = seq
end
local updates = {}
for k, v in pairs(cjson.decode(ARGV[6])) do
  updates[#updates + 1] = k
  updates[#updates + 1] = v
end
if #updates > 0 then
  redis.call('HSET', KEYS[2], unpack(updates))
end
redis.call('HSET', KEYS[4], cid, ack)
redis.call('HSET', KEYS[1], 'seq', seq, 'active', now, 'step', ARGV[7])
if ARGV[8] == '1' then
  redis.call('HSET', KEYS[1], 'status', 'completed', 'completed_at', now)
  redis.call('HDEL', KEYS[1], 'deadline')
  redis.call('ZREM', KEYS[6], sid)
  count(tag, site, now, 'completed', ttl)
  index(tag, site, 'completed', now, sid, ttl)
  emit(tag, sid, site, 'lead.completed', 'evt_' .. sid .. '_completed', now, ttl)
else
  local deadline = now + tonumber(m[4])
  redis.call('HSET', KEYS[1], 'deadline', deadline)
  redis.call('ZADD', KEYS[6], deadline, sid)
end
expire({KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, ttl)
return {'ok', ack, first, now, recovered}
