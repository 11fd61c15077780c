-- Claim due outbox events for delivery, with a lease.
-- KEYS: 1 shard outbox (event id -> due ms)
-- ARGV: 1 max events, 2 lease ms, 3 shard tag
-- Returns a flat list {event id, lease token, ...}. A claimed event is due again
-- when its lease ends, so a worker that dies mid-delivery loses nothing. An event
-- whose session has an older undelivered event for the same destination waits behind
-- it (in order: README, Delivery).
local limit, lease, tag = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local now = now_ms()
local out = {}
for _, eid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)) do
  local ev = tag .. 'e:' .. eid
  local sid = redis.call('HGET', ev, 'session')
  if not sid then
    redis.call('ZREM', KEYS[1], eid)
  else
    local head = redis.call('LINDEX', tag .. 's:' .. sid .. ':events' .. suffix_of(eid), 0)
    if head and head ~= eid then
      redis.call('ZADD', KEYS[1], now + lease, eid)
    else
      local token = tostring(now + lease)
      redis.call('ZADD', KEYS[1], now + lease, eid)
      redis.call('HSET', ev, 'lease', token)
      out[#out + 1] = eid
      out[#out + 1] = token
    end
  end
end
return out
