-- Report rows of the given sessions of one shard (reads only).
-- KEYS: 1 any key of the shard (routes the call to its slot)
-- ARGV: 1 shard tag, 2 the session ids, comma-separated
-- Returns one JSON array of 12 strings per session: one JSON string and one
-- argument cost far less client-side than 12 replies and 2 arguments per row.
local tag, out, n = ARGV[1], {}, 0
for sid in string.gmatch(ARGV[2], '[^,]+') do
  n = row(tag, sid, out, n)
end
return cjson.encode(out)
