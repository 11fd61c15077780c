-- GET /r/<token>?s=<n>: the link was the one in reminder step n (CONTRACT §11). Noted
-- on the session so that link_resume.lua attributes the return to that reminder.
-- KEYS: 1 session
-- ARGV: 1 the step (1..3)
-- A session that is gone is left alone (no key is created). Returns 1, or 0 if gone.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'resume_step', ARGV[1])
return 1
