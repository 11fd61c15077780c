-- One page of a sorted set, highest score first, with the report row of each
-- member when a shard tag is given (reads only).
-- KEYS: 1 the sorted set; ARGV: 1 max score, 2 min score, 3 offset, 4 count,
--       5 shard tag of the members' keys, or '' for the page alone
-- Returns one JSON array: per entry its member, its score and, with a tag, the
-- 12 row strings (redis-py would otherwise build a list and a float per entry).
local page = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYSCORE', 'REV', 'LIMIT',
  ARGV[3], ARGV[4], 'WITHSCORES')
if ARGV[5] == '' then
  return cjson.encode(page)
end
local out, n = {}, 0
for i = 1, #page, 2 do
  out[n + 1] = page[i]
  out[n + 2] = page[i + 1]
  n = row(ARGV[5], page[i], out, n + 2)
end
return cjson.encode(out)
