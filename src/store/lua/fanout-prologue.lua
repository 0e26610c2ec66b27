-- Shared by claim.lua and settle.lua (prepended after prologue.lua).
-- KEYS after the common ones: recipients zset, delivery states of the original, of the correction,
-- possible-duplicates set, failures hash, rate bucket, purge states, purge failures, purge-rate
-- bucket. ARGV[4] kind: "original" or "correction" (purge.lua: "purge").
-- Delivery states are one byte per recipient in a string, at the recipient's index in the frozen
-- set (one GETRANGE and one SETRANGE per transaction, one byte of memory per recipient).
-- Original: zero byte or past the end = queued (or skipped once recalled), i = in an SMTP
-- transaction, s = sent, f = failed for good, k = skipped after being claimed.
-- Correction: zero/absent, i, s, f, k (k: not sent because the correction stopped).
local K_RECIPIENTS = KEYS[COMMON_KEYS + 1]
local K_ORIGINAL = KEYS[COMMON_KEYS + 2]
local K_CORRECTION = KEYS[COMMON_KEYS + 3]
local K_DUPLICATES = KEYS[COMMON_KEYS + 4]
local K_FAILURES = KEYS[COMMON_KEYS + 5]
local K_RATE = KEYS[COMMON_KEYS + 6]
local K_PURGE = KEYS[COMMON_KEYS + 7]
local K_PURGE_FAILURES = KEYS[COMMON_KEYS + 8]
local K_PURGE_RATE = KEYS[COMMON_KEYS + 9]
local KIND = ARGV[4]
-- CORRECTION_DUPLICATE: the prefix of the correction's members of the possible-duplicates set
-- (store/keys.ts CORRECTION_DUPLICATE_PREFIX, defined before this file by store/scripts.ts).

-- A fan-out runs as long as the action that ends it may still come: the original's until `finish`
-- (or a recall), the correction's until `finishCorrection`.
local ENDED_BY = {original = 'finish', correction = 'finishCorrection'}
local function running(kind, state)
  return canStart(ENDED_BY[kind], state)
end

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

-- One member per phase, so each phase's flags can be told apart; the count is of recipients (the
-- spec's `possibleDuplicates`): a recipient flagged in both phases counts once.
local function markDuplicate(addr)
  local member, other = addr, CORRECTION_DUPLICATE .. addr
  if KIND == 'correction' then member, other = other, addr end
  if redis.call('SADD', K_DUPLICATES, member) == 1 and redis.call('SISMEMBER', K_DUPLICATES, other) == 0 then
    incr('possibleDuplicates', 1)
  end
end

local function finishCorrectionIfDone()
  local state = field(KEYS[1], 'state')
  if not running('correction', state) then return end
  local done = num(KEYS[1], 'corrected') + num(KEYS[1], 'correctionFailed')
  if done >= num(KEYS[1], 'correctionTotal') then
    transition('finishCorrection', state, outcome('finishCorrection', state), cjson.encode({
      corrected = num(KEYS[1], 'corrected'), failed = num(KEYS[1], 'correctionFailed')}))
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
