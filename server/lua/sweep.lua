-- Flag sessions whose idle deadline passed (Redis clock) as abandoned, once each.
-- KEYS: 1 shard deadlines (session id -> a time at or before its deadline)
-- ARGV: 1 max sessions per call, 2 retention ms, 3 shard tag,
--       4 the abandoned event id pattern (session id, number; keys.ABANDONED_EVENT),
--       5 JSON {site: [destinations that take lead.abandoned: suffix or [suffix, condition]]}
--         (a site missing from it: the webhook's, so nothing is dropped)
--       6 the reminder event id pattern (session id, number, step; keys.REMINDER_EVENT),
--       7 JSON {site: {"after": [reminder delays ms], "marketing": bool}} (sites with
--         reminders only, CONTRACT §11): a session with an email (and, when "marketing",
--         marketing consent, §12) gets one visitor.reminder event per delay, due then
-- Returns {flagged session ids, next deadline ms or "", now ms, max ms flagged late}.
-- Cost is proportional to the expired sessions only (ZRANGEBYSCORE ... LIMIT).
local limit, ttl, tag, abandoned_id = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local routes = cjson.decode(ARGV[5])
local reminders = cjson.decode(ARGV[7] or '{}')
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
local flagged = {}
local late = 0
for i = 1, #due, 2 do
  local sid = due[i]
  redis.call('ZREM', KEYS[1], sid)
  local s = tag .. 's:' .. sid
  local m = redis.call('HMGET', s, 'status', 'site', 'step', 'fwd', 'deadline', 'exp_due',
    'spam')
  -- the set may hold a time before the session's deadline (visitor.lua does not move
  -- it on every message): the deadline stored with the session decides
  local deadline = tonumber(m[5]) or tonumber(due[i + 1])
  if m[1] == 'open' and deadline > now then
    redis.call('ZADD', KEYS[1], deadline, sid)
  elseif m[1] == 'open' then
    late = math.max(late, now - deadline)
    local site = m[2]
    local n = redis.call('HINCRBY', s, 'abandons', 1)
    redis.call('HSET', s, 'status', 'abandoned', 'abandoned_at', now)
    redis.call('HDEL', s, 'deadline', 'queued')
    count(tag, site, now, 'abandoned', ttl)
    count(tag, site, now, 'stop:' .. (m[3] or ''), ttl)
    index(tag, site, 'abandoned', now, sid, ttl)
    local c = redis.call('HMGET', s .. ':fields', 'email', 'phone', 'marketing_consent')
    local has_email = c[1] and c[1] ~= ''
    local contactable = has_email or (c[2] and c[2] ~= '')
    if contactable then
      count(tag, site, now, 'contactable', ttl)  -- the recovery report (§11)
    end
    -- a spam session (§12) is kept and counted, and forwarded only once released
    local send = not m[7] and (m[4] == 'always' or (m[4] == 'with-contact' and contactable))
    if m[7] then
      count_spam(tag, site, now, sid, s, ttl)
    end
    if send then
      emit(tag, sid, site, 'lead.abandoned', string.format(abandoned_id, sid, n), now, ttl,
        routes[site] or {''})
    end
    local plan = not m[7] and reminders[site]
    if plan then
      if has_email and (not plan.marketing or c[3] == 'true') then
        for step, delay in ipairs(plan.after) do
          emit(tag, sid, site, 'visitor.reminder', string.format(ARGV[6], sid, n, step), now,
            ttl, {':reminder'}, now + delay)
        end
      end
    end
    if m[6] then  -- the visitor sent something: keep it (an empty session keeps its short TTL)
      expire({s, s .. ':fields', s .. ':transcript', s .. ':ids'}, ttl)
    end
    flagged[#flagged + 1] = sid
  end
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {flagged, nxt[2] or '', now, late}
