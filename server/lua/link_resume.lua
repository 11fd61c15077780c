-- A resume link reopened a session (CONTRACT §11): remember it on the session.
-- KEYS: 1 session
-- ARGV: 1 the shard tag, 2 retention ms
-- Sets `link_opened` (ms, Redis time; the first opening is kept, and counted for the
-- recovery report) and, when the session is abandoned, `resume_via`: 'reminder:<n>'
-- when the link came from reminder step n (`resume_step`, noted by GET /r/<token>?s=n),
-- else 'link'; visitor.lua turns it into `recovered_by` when the next visitor event
-- revives the session. A session that is gone (expired, erased) is left alone: no key
-- is created for it.
-- Returns the session's status, or false when it is gone.
local m = redis.call('HMGET', KEYS[1], 'status', 'site', 'resume_step')
local status = m[1]
if not status then
  return false
end
local now = now_ms()
if redis.call('HSETNX', KEYS[1], 'link_opened', now) == 1 then
  count(ARGV[1], m[2], now, 'link_opened', tonumber(ARGV[2]))
end
if status == 'abandoned' then
  redis.call('HSET', KEYS[1], 'resume_via', m[3] and ('reminder:' .. m[3]) or 'link')
end
return status
