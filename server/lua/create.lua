-- Create a session with its opening bot messages.
-- KEYS: 1 session, 2 fields, 3 transcript, 4 client ids, 5 events, 6 shard deadlines
-- ARGV: 1 session id, 2 meta JSON (flat string map incl. site, idle ms, fwd, tok, uid),
--       3 bot entries JSON array, 4 retention ms, 5 shard tag ("chatlead:{n}:"),
--       6 TTL ms while the visitor has sent nothing (visitor.lua gives the session
--       its retention at the first visitor event)
-- Returns {seq, created ms}. Running it twice returns the first result.
local sid, tag, ttl = ARGV[1], ARGV[5], tonumber(ARGV[4])
if redis.call('EXISTS', KEYS[1]) == 1 then
  local m = redis.call('HMGET', KEYS[1], 'seq', 'created')
  return {tonumber(m[1]), tonumber(m[2])}
end
local now = now_ms()
local meta = cjson.decode(ARGV[2])
local seq, bytes = append(KEYS[3], cjson.decode(ARGV[3]), 0, now)
local deadline = now + tonumber(meta.idle)
local fields = {'status', 'open', 'seq', seq, 'created', now, 'active', now, 'deadline', deadline,
  'queued', '1', 'bytes', bytes}
for k, v in pairs(meta) do
  fields[#fields + 1] = k
  fields[#fields + 1] = v
end
redis.call('HSET', KEYS[1], unpack(fields))
redis.call('ZADD', KEYS[6], deadline, sid)
count(tag, meta.site, now, 'started', ttl)
if meta.step and meta.step ~= 'done' then
  count(tag, meta.site, now, 'asked:' .. meta.step, ttl)  -- the first question
end
if meta.variant then  -- the experiments report (§12)
  count(tag, meta.site, now, 'variant_started:' .. meta.variant, ttl)
end
index(tag, meta.site, 'started', now, sid, ttl)
expire({KEYS[1], KEYS[3]}, math.min(ttl, tonumber(ARGV[6])))
watch(tag, sid)
return {seq, now}
