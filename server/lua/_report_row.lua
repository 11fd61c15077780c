-- The report row of one session, shared by report_rows.lua and report_page.lua
-- (loaded between _prelude.lua and the script).
-- Appends the 12 report strings of session `sid` to `out` after index `n`: seven
-- fields of its hash (status .. abandons, as HMGET'd below), the name, email, phone
-- and company of its fields hash, and the status of the lead.abandoned event of its
-- latest abandonment ('' when absent). Every key read carries the shard tag, as in
-- sweep.lua.
local function row(tag, sid, out, n)
  local key = tag .. 's:' .. sid
  local m = redis.call('HMGET', key, 'status', 'created', 'active', 'abandoned_at', 'step',
    'recovered', 'abandons')
  local f = redis.call('HMGET', key .. ':fields', 'name', 'email', 'phone', 'company')
  local delivery = false
  if m[7] then
    delivery = redis.call('HGET', tag .. 'e:evt_' .. sid .. '_abandoned_' .. m[7], 'status')
  end
  for j = 1, 7 do
    out[n + j] = m[j] or ''
  end
  for j = 1, 4 do
    out[n + 7 + j] = f[j] or ''
  end
  out[n + 12] = delivery or ''
  return n + 12
end
