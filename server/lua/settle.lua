-- Record one delivery attempt and its outcome.
-- KEYS: 1 shard outbox, 2 event, 3 event attempts, 4 session, 5 session events (this
--       event's destination)
-- ARGV: 1 event id, 2 lease token from claim, 3 "delivered" | "retry" | "dead" | "defer"
--       (defer: nothing was sent, e.g. the CRM budget is used up; no attempt recorded),
--       4 attempt JSON {status_code, latency_ms, error, response}, 5 retry delay ms,
--       6 CRM ref id or "", 7 retention ms, 8 the session field of this destination's ref id,
--       9 the shard tag
-- The destination's health (keys.py, destination health) changes in the same step, under
-- the shard tag (the event's site and destination name: its hash and id suffix):
--   health:<site>/<dest>           hash: ok (last success ms), fail (last failure ms),
--                                  error (its first 120 bytes); TTL retention
--   health:<site>/<dest>:failures  zset: "<event id>#<attempt n>" -> when, for each failed
--                                  attempt of the last hour (trimmed here); TTL one hour
--   health:<site>/<dest>:dead      zset: event id -> when it went dead, for events dead now
--                                  (removed when delivered; replay.lua removes it when
--                                  queued again); trimmed to the retention, TTL retention
-- Returns "ok", or "lost" when the lease ran out and another worker owns the event
-- (the attempt is still recorded, and counts for the destination's health).
local eid, outcome, ttl = ARGV[1], ARGV[3], tonumber(ARGV[7])
if redis.call('EXISTS', KEYS[2]) == 0 then
  return 'gone'
end
local now = now_ms()
if outcome == 'defer' then
  if redis.call('HGET', KEYS[2], 'lease') == ARGV[2] then
    redis.call('HDEL', KEYS[2], 'lease')
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[5]), eid)
    redis.call('HSET', KEYS[2], 'next', now + tonumber(ARGV[5]))
  end
  return 'ok'
end
local attempt = cjson.decode(ARGV[4])
if redis.call('HEXISTS', KEYS[2], 'erased') == 1 then
  -- erased while this attempt was in flight: keep that it happened, not what the CRM
  -- answered (it may echo the lead)
  attempt = {status_code = attempt.status_code, latency_ms = attempt.latency_ms,
    error = 'erased'}
end
attempt.at = now - math.floor(tonumber(attempt.latency_ms) or 0)
redis.call('RPUSH', KEYS[3], cjson.encode(attempt))
redis.call('PEXPIRE', KEYS[3], ttl)
local number = redis.call('HINCRBY', KEYS[2], 'attempts', 1)
local health = health_key(ARGV[9], redis.call('HGET', KEYS[2], 'site') or '', eid)
if outcome == 'delivered' then
  redis.call('HSET', health, 'ok', now)
else
  redis.call('HSET', health, 'fail', now, 'error', short_error(attempt))
  local failures = health .. ':failures'
  redis.call('ZADD', failures, now, eid .. '#' .. number)
  redis.call('ZREMRANGEBYSCORE', failures, '-inf', now - HOUR_MS)
  redis.call('PEXPIRE', failures, HOUR_MS)
end
redis.call('PEXPIRE', health, ttl)
if redis.call('HGET', KEYS[2], 'lease') ~= ARGV[2] then
  return 'lost'
end
redis.call('HDEL', KEYS[2], 'lease')
-- a record the CRM created is kept even when a later step of the attempt failed, so
-- the retry updates it instead of creating another
if ARGV[6] ~= '' and redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HSET', KEYS[4], ARGV[8], ARGV[6])
end
if outcome == 'retry' then
  local due = now + tonumber(ARGV[5])
  redis.call('ZADD', KEYS[1], due, eid)
  redis.call('HSET', KEYS[2], 'next', due)
  return 'ok'
end
redis.call('ZREM', KEYS[1], eid)
local dead = health .. ':dead'
if outcome == 'dead' then
  redis.call('ZADD', dead, now, eid)
  redis.call('ZREMRANGEBYSCORE', dead, '-inf', now - ttl)
  redis.call('PEXPIRE', dead, ttl)
else
  redis.call('ZREM', dead, eid)
end
-- a reminder step that reached the SMTP server (not one settled unsent), for the
-- recovery report (§11); once, as the lease holder settles it once
local step = eid:match('_(%d+):reminder$')
local unsent = type(attempt.response) == 'string' and attempt.response:sub(1, 9) == 'not sent:'
if step and outcome == 'delivered' and not unsent then
  count(ARGV[9], redis.call('HGET', KEYS[2], 'site') or '', now, 'reminded:' .. step, ttl)
end
redis.call('HSET', KEYS[2], 'status', outcome, 'settled', now)
redis.call('HDEL', KEYS[2], 'next')
redis.call('LREM', KEYS[5], 0, eid)
local head = redis.call('LINDEX', KEYS[5], 0)
if head then
  -- the next event of this session was waiting behind this one: due now, or at its own
  -- later time (a reminder step is scheduled ahead)
  local due = tonumber(redis.call('HGET', ARGV[9] .. 'e:' .. head, 'next')) or now
  redis.call('ZADD', KEYS[1], 'XX', math.max(now, due), head)
end
return 'ok'
