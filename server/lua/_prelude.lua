-- Shared by every script (prepended at load time). All keys built here carry
-- the shard tag of KEYS[1], so each script touches one hash slot (docs/ARCHITECTURE.md, Redis layout).
-- They are not all in KEYS (stats keys name the day on Redis' clock): Redis Cluster
-- runs a script on the node that owns its KEYS and lets it reach that node's other
-- keys; keys of KEYS[1]'s slot are on that node unless the slot is mid-migration.

-- How often a busy session's keys get their retention TTL pushed forward.
local EXPIRE_EVERY_MS = 60000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function day_of(ms)
  return math.floor(ms / 86400000)
end

-- ISO-8601 UTC with milliseconds, as protocol.iso_ms writes it (days to a civil
-- date: H. Hinnant's algorithm, proleptic Gregorian).
local function iso_ms(ms)
  local s = math.floor(ms / 1000)
  local z = math.floor(s / 86400) + 719468
  local rem = s % 86400
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400 + (m <= 2 and 1 or 0)
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,
    math.floor(rem / 3600), math.floor(rem % 3600 / 60), rem % 60, ms % 1000)
end

-- Bump a per-site, per-day counter (kept a little longer than the data).
local function count(tag, site, now, field, ttl)
  local key = tag .. 'stats:' .. site .. ':' .. day_of(now)
  redis.call('HINCRBY', key, field, 1)
  redis.call('PEXPIRE', key, ttl + 86400000)
end

-- A spam session (§12) finished (completed, or abandoned): counted and listed apart,
-- once per session (`spam_at` keeps when it was first).
local function count_spam(tag, site, now, sid, session_key, ttl)
  if redis.call('HSETNX', session_key, 'spam_at', now) == 1 then
    count(tag, site, now, 'spam', ttl)
  end
  local key = tag .. 'idx:' .. site .. ':spam'
  redis.call('ZADD', key, now, sid)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl)
  redis.call('PEXPIRE', key, ttl)
end

-- Record a session in a per-site report index (time-ordered).
local function index(tag, site, kind, now, sid, ttl)
  local key = tag .. 'idx:' .. site .. ':' .. kind
  redis.call('ZADD', key, now, sid)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - ttl)
  redis.call('PEXPIRE', key, ttl)
end

-- Append entries ({from, text, ...}) to the transcript with consecutive seqs.
-- Returns the last seq and the bytes written.
local function append(transcript_key, entries, seq, now)
  local bytes = 0
  for _, entry in ipairs(entries) do
    seq = seq + 1
    entry.seq = seq
    entry.ts = now
    local raw = cjson.encode(entry)
    bytes = bytes + #raw
    redis.call('RPUSH', transcript_key, raw)
  end
  return seq, bytes
end

-- Whether a condition (conditions.py normal form) holds on the session's fields; an
-- absent or empty field matches nothing (not_in included), as in conditions.holds.
local function holds(c, fields)
  if c.all then
    for _, part in ipairs(c.all) do
      if not holds(part, fields) then return false end
    end
    return true
  end
  if c.any then
    for _, part in ipairs(c.any) do
      if holds(part, fields) then return true end
    end
    return false
  end
  local value = fields[c.field]
  if value == nil or value == '' then return false end
  if c.op == 'present' then return true end
  if c.op == 'equals' then return value == c.value end
  if c.op == 'at_least' then
    local number = tonumber(value)
    return number ~= nil and number == number and number >= c.value
  end
  local inside = false
  for _, v in ipairs(c.value) do
    if v == value then inside = true end
  end
  if c.op == 'in' then return inside end
  return not inside
end

-- Write a lead event to the shard's outbox, one copy per destination (routes: its
-- event id suffix, '' or ':<name>', or {suffix, condition} when the destination has
-- a `when`), each queued behind that destination's earlier undelivered events of the
-- session. Idempotent: the event ids are deterministic. `due` (optional, ms): when the
-- event is first due (a reminder's time); absent: now.
local function emit(tag, sid, site, kind, base_id, now, ttl, routes, due)
  local at = due or now
  local fields
  for _, route in ipairs(routes) do
    local suffix, condition = route, nil
    if type(route) == 'table' then suffix, condition = route[1], route[2] end
    local eid = base_id .. suffix
    local ev = tag .. 'e:' .. eid
    local take = true
    if condition then
      if not fields then
        fields = {}
        local flat = redis.call('HGETALL', tag .. 's:' .. sid .. ':fields')
        for i = 1, #flat, 2 do fields[flat[i]] = flat[i + 1] end
      end
      take = holds(condition, fields)
    end
    if take and redis.call('EXISTS', ev) == 0 then
      redis.call('HSET', ev, 'type', kind, 'session', sid, 'site', site,
        'status', 'pending', 'created', now, 'next', at, 'attempts', 0)
      redis.call('PEXPIRE', ev, ttl + at - now)
      local queue = tag .. 's:' .. sid .. ':events' .. suffix
      redis.call('RPUSH', queue, eid)
      redis.call('PEXPIRE', queue, ttl + at - now)
      redis.call('ZADD', tag .. 'outbox', at, eid)
      redis.call('ZADD', tag .. 'deliveries', now, eid)
    end
  end
  redis.call('ZREMRANGEBYSCORE', tag .. 'deliveries', '-inf', now - ttl)
end

-- The destination suffix of an event id ('' for the webhook's).
local function suffix_of(eid)
  return string.match(eid, '(:[a-z0-9][a-z0-9_-]*)$') or ''
end

-- Move an open session's deadline (into `set`, the session's HSET arguments). The
-- deadline set may hold an earlier time than the deadline: the sweeper puts a session
-- whose stored deadline is later back in at that deadline. So only a session not in
-- the set (`queued`) is added: once per idle period, not once per message.
local function move_deadline(set, deadlines_key, sid, deadline, queued)
  set[#set + 1] = 'deadline'
  set[#set + 1] = deadline
  if queued ~= '1' then
    redis.call('ZADD', deadlines_key, deadline, sid)
    set[#set + 1] = 'queued'
    set[#set + 1] = '1'
  end
end

local function expire(keys, ttl)
  for _, key in ipairs(keys) do
    redis.call('PEXPIRE', key, ttl)
  end
end

-- Live takeover (CONTRACT §10). The agent holding a session, or '' when none: a hold
-- lapses once its agent's socket has not touched it for HOLD_MS.
local HOLD_MS = 30000
local function holder(agent, seen, now)
  if agent and agent ~= '' and now - (tonumber(seen) or 0) < HOLD_MS then
    return agent
  end
  return ''
end

-- Tell live sockets of every process that a session changed: the visitor's (`live`,
-- on the notification channel) and the consoles (the shard's watch channel, a sharded
-- channel of the session's own slot: SPUBLISH reaches only the nodes that serve it).
-- A nudge only: what changed is read from the session by whoever gets it.
local function watch(tag, sid)
  redis.call('SPUBLISH', tag .. 'watch', sid)
end

local function nudge(session_key, sid)
  redis.call('PUBLISH', 'chatlead:notify', cjson.encode({live = sid}))
  watch(string.match(session_key, '^(.*}:)'), sid)
end
