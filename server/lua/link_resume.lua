-- A resume link reopened a session (CONTRACT §11): remember it on the session.
-- KEYS: 1 session
-- ARGV: (none)
-- Sets `link_opened` (ms, Redis time; the first opening is kept) and, when the
-- session is abandoned, `resume_via` = 'link', which visitor.lua turns into
-- `recovered_by` when the next visitor event revives the session. A session that is
-- gone (expired, erased) is left alone: no key is created for it.
-- Returns the session's status, or false when it is gone.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then
  return false
end
redis.call('HSETNX', KEYS[1], 'link_opened', now_ms())
if status == 'abandoned' then
  redis.call('HSET', KEYS[1], 'resume_via', 'link')
end
return status
