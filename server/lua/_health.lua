-- A destination's delivery health (keys.py, destination health), shared by settle.lua and
-- replay.lua (loaded after _prelude.lua; the session scripts do without it).

-- How far back a destination's failed attempts count (keys.HEALTH_WINDOW_MS).
local HOUR_MS = 3600000
-- Longest last error a destination's health keeps (bytes, cut on a character boundary).
local ERROR_BYTES = 120

-- The health hash of an event's destination: '<tag>health:<site>/<name>', the name
-- from the event id's suffix (the webhook's when it has none).
local function health_key(tag, site, eid)
  local suffix = suffix_of(eid)
  local name = suffix == '' and 'webhook' or string.sub(suffix, 2)
  return tag .. 'health:' .. site .. '/' .. name
end

-- What went wrong in a failed attempt, by kind only: the error up to its first ':'
-- (after it a CRM may quote what the visitor typed, which erasing a session could not
-- reach here), with the HTTP status, cut short.
local function short_error(attempt)
  local code = tonumber(attempt.status_code)
  local status = code and ('HTTP ' .. math.floor(code)) or nil
  local text = attempt.error
  if type(text) ~= 'string' or text == '' then
    text = status or 'failed'
  else
    text = string.match(text, '^([^:]*)') or text
    if status and not string.find(text, status, 1, true) then
      text = text .. ' (' .. status .. ')'
    end
  end
  if #text <= ERROR_BYTES then
    return text
  end
  local cut = ERROR_BYTES
  -- never split a UTF-8 sequence: back off while the next byte continues one
  while cut > 0 and string.byte(text, cut + 1) >= 128 and string.byte(text, cut + 1) < 192 do
    cut = cut - 1
  end
  return string.sub(text, 1, cut)
end
