-- Shared by claim.lua and settle.lua (prepended after prologue.lua).
-- KEYS[5] recipients zset, KEYS[6] delivery states of the original, KEYS[7] of the correction,
-- KEYS[8] possible-duplicates set, KEYS[9] failures hash, KEYS[10] rate bucket. ARGV[4] kind:
-- "original" or "correction".
-- Delivery states are one byte per recipient in a string, at the recipient's index in the frozen
-- set (one GETRANGE and one SETRANGE per transaction, one byte of memory per recipient).
-- Original: zero byte or past the end = queued (or skipped once recalled), i = in an SMTP
-- transaction, s = sent, f = failed for good, k = skipped after being claimed.
-- Correction: zero/absent, i, s, f, k (k: not sent because the correction stopped).
local KIND = ARGV[4]

-- Skips zero: Lua's -0 reaches Redis as "-0", which HINCRBY refuses, and a script error does not
-- roll back the writes the script already made.
local function incr(f, by)
  if by ~= 0 then redis.call('HINCRBY', KEYS[1], f, string.format('%d', by)) end
end

-- The states of the recipients at indexes first .. first + n - 1: a list of n one-letter strings,
-- false where none is recorded yet.
local function states(key, first, n)
  local raw = redis.call('GETRANGE', key, first, first + n - 1)
  local t = {}
  for p = 1, n do
    local b = string.byte(raw, p)
    if b == nil or b == 0 then t[p] = false else t[p] = string.char(b) end
  end
  return t
end

-- Writes back a list as `states` returns it (false = a zero byte), in one SETRANGE.
local function writeStates(key, first, t)
  local out = {}
  for p = 1, #t do out[p] = t[p] or '\0' end
  redis.call('SETRANGE', key, first, table.concat(out))
end

-- One HSET of many fields; `flat` is a field, value, field, value... list.
local function hsetMany(key, flat)
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end

local function markDuplicate(addr)
  if redis.call('SADD', KEYS[8], addr) == 1 then incr('possibleDuplicates', 1) end
end

local function startCorrectionIfQuiet()
  -- The correction starts once no original is queued or in flight, so its audience is final.
  local state = field(KEYS[1], 'state')
  if num(KEYS[1], 'queued') > 0 or num(KEYS[1], 'inflight') > 0 then return false end
  if state == 'sending' then
    redis.call('HSET', KEYS[1], 'finishAt', tostring(NOW))
    transition('finish', 'sending', 'sent', cjson.encode({sent = num(KEYS[1], 'sent'), failed = num(KEYS[1], 'failed')}))
    return false
  end
  if state ~= 'correcting' or field(KEYS[1], 'correctionStarted') == '1' then return false end
  local total = num(KEYS[1], 'sent')
  redis.call('HSET', KEYS[1], 'correctionStarted', 1, 'correctionTotal', total, 'corrected', 0,
    'correctionFailed', 0, 'correctionInflight', 0)
  if total == 0 then
    transition('finishCorrection', 'correcting', 'corrected', cjson.encode({corrected = 0, failed = 0}))
    return false
  end
  audit('startCorrection', 'correcting', 'correcting', cjson.encode({recipients = total}))
  return true
end

local function finishCorrectionIfDone()
  if field(KEYS[1], 'state') ~= 'correcting' then return end
  local done = num(KEYS[1], 'corrected') + num(KEYS[1], 'correctionFailed')
  if done >= num(KEYS[1], 'correctionTotal') then
    transition('finishCorrection', 'correcting', 'corrected', cjson.encode({corrected = num(KEYS[1], 'corrected'),
      failed = num(KEYS[1], 'correctionFailed')}))
  end
end

-- Progress for the dashboard, at most four times a second per message.
local function progress()
  local last = num(KEYS[1], 'progressPublishedAt')
  if NOW - last >= 250 then
    redis.call('HSET', KEYS[1], 'progressPublishedAt', tostring(NOW))
    publish('progress')
  end
end
