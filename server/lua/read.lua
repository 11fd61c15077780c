-- Read several keys of one shard in one atomic step (what MULTI gives on one Redis;
-- redis-py's cluster client runs MULTI only slowly, so reads use this everywhere).
-- KEYS: the keys to read, all in one hash slot
-- ARGV: per key, "hash" (HGETALL) or the first list index to return (LRANGE i -1)
-- Returns one reply per key: a flat field/value list for a hash, the items for a list.
local out = {}
for i, key in ipairs(KEYS) do
  if ARGV[i] == 'hash' then
    out[i] = redis.call('HGETALL', key)
  else
    out[i] = redis.call('LRANGE', key, tonumber(ARGV[i]), -1)
  end
end
return out
