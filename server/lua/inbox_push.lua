-- Put a delivered lead in an inbox list once per event id: a redelivery (a worker
-- killed between pushing and settling) changes nothing.
-- KEYS: 1 the list, 2 its hash of pushed event ids (same hash slot as the list)
-- ARGV: 1 event id, 2 the entry (JSON), 3 entries kept at most (0: no cap), 4 now ms
-- Returns 1 when pushed, 0 when that event was pushed before.
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[4]) == 0 then
  return 0
end
redis.call('LPUSH', KEYS[1], ARGV[2])
local keep = tonumber(ARGV[3])
if keep > 0 then
  redis.call('LTRIM', KEYS[1], 0, keep - 1)
end
return 1
