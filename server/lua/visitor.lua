-- One visitor event (message, field or submit): the whole state change in one step.
-- KEYS: 1 session, 2 fields, 3 transcript, 4 client ids, 5 events, 6 shard deadlines
-- ARGV: 1 session id, 2 retention ms, 3 shard tag, 4 the event as JSON:
--       {"id": client frame id, "seq": seq the caller's view was built on,
--        "visitor": entry or null, "bots": [entries], "updates": {field: value},
--        "step": flow step after, "completes": bool, "max": longest transcript,
--        "rate": visitor events per second, "burst": bucket size,
--        "max_bytes": transcript byte cap,
--        "completed_id": the lead.completed event id (keys.COMPLETED_EVENT), when it completes,
--        "completed_to": the destinations that take it, each a suffix or
--        [suffix, condition on the fields] (sites.Route),
--        "agent": the agent the caller believes holds the session, or '',
--        "stamp": a field to set to the time now (ISO-8601), or absent,
--        "spam": why this event flags the session spam (chatlead.spam), or absent,
--        "min_fill": ms; completing sooner than this after the start is spam, or absent}
--       A spam session (`spam` in its hash) completes like any other, but its
--       lead.completed is not written: it waits for POST /api/sessions/{id}/release.
--       The token bucket lives in the session hash, so it holds across every
--       socket and every server process of the session.
-- The session hash also holds `exp_due` (when its keys next get their retention TTL)
-- and `queued` (1 while the session is in the shard's deadline set), `bytes` (the
-- transcript's size) and `cut` (where trimming it stopped).
-- Returns one of
--   {"dup", seq}         frame id already accepted: ack again with its seq
--   {"gone"}             no such session (expired or erased)
--   {"closed"}           session completed: read-only
--   {"full"}             the transcript reached its length cap
--   {"limited"}          the session's token bucket is empty (nothing stored)
--   {"stale", seq, agent} the caller's view is out of date: reload and retry (agent:
--                        who holds the session now, or '')
--   {"ok", ack seq, first bot seq, now ms, recovered 0|1}
local sid, ttl, tag = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local ev = cjson.decode(ARGV[4])
local m = redis.call('HMGET', KEYS[1], 'status', 'seq', 'site', 'idle', 'tokens', 'tstamp',
  'exp_due', 'queued', 'bytes', 'cut', 'agent', 'agent_seen', 'wait_from', 'step')
local status, seq, site = m[1], tonumber(m[2]), m[3]
if not status then
  return {'gone'}
end
-- An ack again for a frame id accepted before. The same value is written back so
-- that a WAIT after this call (DURABILITY, §14) covers the first write too, which
-- may have come through another connection: replication is one ordered stream.
local function dup(seen)
  redis.call('HSET', KEYS[4], ev.id, seen)
  return {'dup', tonumber(seen)}
end
-- A refusal, unless the frame id was accepted before: then it is acked again.
local function refused(kind, extra)
  local seen = redis.call('HGET', KEYS[4], ev.id)
  if seen then
    return dup(seen)
  end
  return {kind, extra}
end
if status == 'completed' then
  return refused('closed')
end
local now = now_ms()
-- The bot's answer depends on whether an agent holds the session (§10): a caller
-- that assumed otherwise decides again (the agent's id, or '', comes back).
local held = holder(m[11], m[12], now)
if seq ~= ev.seq or held ~= ev.agent then
  local seen = redis.call('HGET', KEYS[4], ev.id)
  if seen then
    return dup(seen)
  end
  return {'stale', seq, held}
end
if seq >= ev.max then
  return refused('full')
end
local tokens = tonumber(m[5]) or ev.burst
tokens = math.min(ev.burst, tokens + (now - (tonumber(m[6]) or now)) * ev.rate / 1000)
if tokens < 1 then
  return refused('limited')
end
local has_visitor = ev.visitor ~= cjson.null
-- Claim the frame id with the seq its ack will carry; taken means a resend (the
-- first write of the script: nothing is changed before it).
local ack = has_visitor and seq + 1 or seq + #ev.bots
if redis.call('HSETNX', KEYS[4], ev.id, ack) == 0 then
  return dup(redis.call('HGET', KEYS[4], ev.id))
end
-- Past the byte cap, the oldest visitor texts give way to a marker (bot entries, the
-- newest entry and the fields are kept); `from` is where the last trim stopped.
local CUT = '[removed: the conversation was too long]'
local function trim(bytes, cap, from)
  local last = redis.call('LLEN', KEYS[3]) - 1
  local i = from
  while bytes > cap and i < last do
    local e = cjson.decode(redis.call('LINDEX', KEYS[3], i))
    if e.from == 'visitor' and type(e.text) == 'string' and #e.text > #CUT then
      bytes = bytes - (#e.text - #CUT)
      e.text = CUT
      redis.call('LSET', KEYS[3], i, cjson.encode(e))
    end
    i = i + 1
  end
  return bytes, i
end
local recovered = 0
if status == 'abandoned' then
  -- what brought the visitor back (§11): a mark a resume link left, else a return
  local via = redis.call('HGET', KEYS[1], 'resume_via') or 'returned'
  redis.call('HSET', KEYS[1], 'status', 'open', 'recovered', '1', 'recovered_by', via,
    'recovered_at', now)
  redis.call('HDEL', KEYS[1], 'resume_via', 'resume_step')
  count(tag, site, now, 'recovered', ttl)
  count(tag, site, now, 'recovered:' .. via, ttl)
  index(tag, site, 'recovered', now, sid, ttl)
  recovered = 1
end
local bytes, written = tonumber(m[9]) or 0, 0
if has_visitor then
  seq, written = append(KEYS[3], {ev.visitor}, seq, now)
  bytes = bytes + written
end
local first = seq + 1
seq, written = append(KEYS[3], ev.bots, seq, now)
bytes = bytes + written
local updates = {}
if ev.stamp then  -- e.g. consent_at (§12): Redis' clock, not a server process's
  updates[1] = ev.stamp
  updates[2] = iso_ms(now)
end
for k, v in pairs(ev.updates) do
  updates[#updates + 1] = k
  updates[#updates + 1] = v
end
if #updates > 0 then
  redis.call('HSET', KEYS[2], unpack(updates))
end
-- a step asked for the first time in this session: the drop-off report's denominator
-- (a branching flow skips some steps, §12)
if ev.step ~= m[14] and ev.step ~= 'done' then
  count(tag, site, now, 'asked:' .. ev.step, ttl)
end
-- one HSET for every session field this event changes
local set = {'tokens', tostring(tokens - 1), 'tstamp', now, 'seq', seq, 'active', now,
  'step', ev.step}
-- the first message no agent has answered yet (§10: visitor.waiting, the consoles,
-- the agent's first-response time)
if has_visitor and not m[13] then
  set[#set + 1] = 'wait_from'
  set[#set + 1] = now
end
if bytes > ev.max_bytes then
  local cut
  bytes, cut = trim(bytes, ev.max_bytes, tonumber(m[10]) or 0)
  set[#set + 1] = 'cut'
  set[#set + 1] = cut
end
set[#set + 1] = 'bytes'
set[#set + 1] = bytes
-- Retention TTLs are pushed forward at most once per EXPIRE_EVERY_MS (four PEXPIREs
-- were a third of this script's commands); keys first written now get theirs at once.
local refresh = (tonumber(m[7]) or 0) <= now
if refresh then
  set[#set + 1] = 'exp_due'
  set[#set + 1] = now + EXPIRE_EVERY_MS
end
-- what only a flagged or a completing event needs (§11, §12), read only then
local late = (ev.spam or ev.completes)
  and redis.call('HMGET', KEYS[1], 'spam', 'created', 'variant', 'recovered') or {}
local spam = late[1]
if not spam and ev.spam then
  spam = ev.spam
  set[#set + 1] = 'spam'
  set[#set + 1] = spam
end
if ev.completes and not spam and ev.min_fill and now - (tonumber(late[2]) or now) < ev.min_fill then
  spam = 'min_fill'
  set[#set + 1] = 'spam'
  set[#set + 1] = spam
end
if ev.completes then
  set[#set + 1] = 'status'
  set[#set + 1] = 'completed'
  set[#set + 1] = 'completed_at'
  set[#set + 1] = now
  redis.call('HDEL', KEYS[1], 'deadline', 'queued')
  redis.call('ZREM', KEYS[6], sid)
  count(tag, site, now, 'completed', ttl)
  if late[4] or recovered == 1 then
    count(tag, site, now, 'recovered_completed', ttl)
  end
  -- qualified leads (§12), per site and, for the experiments report, per variant
  local qualified = (ev.updates.qualified or redis.call('HGET', KEYS[2], 'qualified')) == 'true'
  if qualified then
    count(tag, site, now, 'qualified', ttl)
  end
  if late[3] then
    count(tag, site, now, 'variant_completed:' .. late[3], ttl)
    if qualified then
      count(tag, site, now, 'variant_qualified:' .. late[3], ttl)
    end
  end
  index(tag, site, 'completed', now, sid, ttl)
  if spam then
    count_spam(tag, site, now, sid, KEYS[1], ttl)
  else
    emit(tag, sid, site, 'lead.completed', ev.completed_id, now, ttl, ev.completed_to)
  end
else
  move_deadline(set, KEYS[6], sid, now + tonumber(m[4]), m[8])
end
redis.call('HSET', KEYS[1], unpack(set))
if refresh or ev.completes then
  expire({KEYS[1], KEYS[2], KEYS[3], KEYS[4]}, ttl)
elseif #updates > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
end
watch(tag, sid)
return {'ok', ack, first, now, recovered}
