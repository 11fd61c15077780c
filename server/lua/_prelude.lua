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

-- Bump a per-site, per-day counter (kept a little longer than the data).
local function count(tag, site, now, field, ttl)
  local key = tag .. 'stats:' .. site .. ':' .. day_of(now)
  redis.call('HINCRBY', key, field, 1)
  redis.call('PEXPIRE', key, ttl + 86400000)
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

-- Write a lead event to the shard's outbox, one copy per destination (its event id
-- suffix: '' or ':<name>'), each queued behind that destination's earlier undelivered
-- events of the session. Idempotent: the event ids are deterministic.
local function emit(tag, sid, site, kind, base_id, now, ttl, suffixes)
  for _, suffix in ipairs(suffixes) do
    local eid = base_id .. suffix
    local ev = tag .. 'e:' .. eid
    if redis.call('EXISTS', ev) == 0 then
      redis.call('HSET', ev, 'type', kind, 'session', sid, 'site', site,
        'status', 'pending', 'created', now, 'next', now, 'attempts', 0)
      redis.call('PEXPIRE', ev, ttl)
      local queue = tag .. 's:' .. sid .. ':events' .. suffix
      redis.call('RPUSH', queue, eid)
      redis.call('PEXPIRE', queue, ttl)
      redis.call('ZADD', tag .. 'outbox', now, eid)
      redis.call('ZADD', tag .. 'deliveries', now, eid)
    end
  end
  redis.call('ZREMRANGEBYSCORE', tag .. 'deliveries', '-inf', now - ttl)
end

-- The destination suffix of an event id ('' for the webhook's).
local function suffix_of(eid)
  return string.match(eid, '(:[a-z0-9][a-z0-9_-]*)$') or ''
end

local function expire(keys, ttl)
  for _, key in ipairs(keys) do
    redis.call('PEXPIRE', key, ttl)
  end
end
