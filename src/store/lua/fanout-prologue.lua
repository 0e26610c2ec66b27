-- Shared by claim.lua and settle.lua (prepended after prologue.lua).
-- KEYS after the common ones: recipients zset, delivery states of the original, of the correction,
-- possible-duplicates set, failures hash, rate bucket, purge states, purge failures, purge-rate
-- bucket, wave of each index, signal evidence list, signal dedupe set, the plan of waves being
-- written. ARGV[4] kind: "original" or "correction" (purge.lua: "purge").
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
local K_WAVES = KEYS[COMMON_KEYS + 10]
local K_SIGNALS = KEYS[COMMON_KEYS + 11]
local K_SIGNAL_KEYS = KEYS[COMMON_KEYS + 12]
local K_WAVES_PLAN = KEYS[COMMON_KEYS + 13]
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

-- Staged sends (SPEC "Staged sends"; store/lua/waves.lua). `waveOpen` on the message: absent for a
-- message sent all at once, 0 while its plan is made (nothing is claimed), 1 seed cohort, 2 canary,
-- 3 the rest (everyone). Each recipient's wave is a byte of K_WAVES at its index: 1, 2, or 0 for the
-- rest. A claim takes a recipient only if its wave is open, so nothing of a later wave reaches SMTP
-- before it starts (promise 9); a halt is the ops pause and a recall ends the fan-out, as always.
local WAVE_NAMES = {'seed', 'canary', 'rest'}

-- The open wave while a staged send still holds later waves back (0, 1 or 2), else nil.
local function gatedWave()
  local open = field(KEYS[1], 'waveOpen')
  if open == nil then return nil end
  open = tonumber(open)
  if open >= 3 then return nil end
  return open
end

-- The wave of a byte of K_WAVES (string.byte's answer, nil past the end).
local function waveOf(b)
  if b == nil or b == 0 then return 3 end
  return b
end

-- The early waves' size: the base of the bounce and failure percentages.
local function earlySize()
  return num(KEYS[1], 'wave1Size') + num(KEYS[1], 'wave2Size')
end

-- Halts a staged send for a signal over its threshold: the ops pause, by Airlock, with the reason
-- (mailed to ops, the approvers and the author by the notification dispatcher, like any halt by Airlock).
local function haltForSignal(kind, count, text)
  local state = field(KEYS[1], 'state')
  if field(KEYS[1], 'paused') or not canStart('pause', state) then return false end
  local reason = 'signal: ' .. text
  redis.call('HSET', KEYS[1], 'paused', cjson.encode({by = AIRLOCK, at = NOW, reason = reason}),
    'haltedBy', cjson.encode({kind = kind, at = NOW, count = count}))
  transition('pause', state, state, cjson.encode({reason = reason, signal = kind, count = count,
    progress = {sent = num(KEYS[1], 'sent'), queued = num(KEYS[1], 'queued'), inFlight = num(KEYS[1], 'inflight')}}), nil, AIRLOCK)
  return true
end

-- Whether the count of signal `kind` is over its threshold now (the thresholds were recorded when the
-- plan was made): halts the send if so, while a wave before the rest is going or waiting.
local function haltIfOver(kind)
  -- Only while the original's waves go (openWave's state): not once recalled.
  if gatedWave() == nil or not canStart('openWave', field(KEYS[1], 'state')) then return false end
  local t = cjson.decode(field(KEYS[1], 'signalThresholds') or '{}')
  local early = earlySize()
  if kind == 'reply' then
    local c = num(KEYS[1], 'signalReplies')
    if t.replies and c >= t.replies then return haltForSignal(kind, c, c .. ' human repl' .. (c == 1 and 'y' or 'ies') .. ' to the early waves') end
  elseif kind == 'report' then
    local c = num(KEYS[1], 'signalReports')
    if t.reports and c >= t.reports then return haltForSignal(kind, c, c .. ' problem report' .. (c == 1 and '' or 's') .. ' from the early waves') end
  elseif kind == 'bounce' then
    local c = num(KEYS[1], 'signalBounces')
    if t.bouncePercent and c > 0 and c * 100 > t.bouncePercent * early then
      return haltForSignal(kind, c, c .. ' bounce' .. (c == 1 and '' or 's') .. ' of ' .. early .. ' early recipients (over ' .. t.bouncePercent .. '%)')
    end
  elseif kind == 'failure' then
    local c = num(KEYS[1], 'signalFailures')
    if t.failurePercent and c > 0 and c * 100 > t.failurePercent * early then
      return haltForSignal(kind, c, c .. ' permanent SMTP failure' .. (c == 1 and '' or 's') .. ' of ' .. early .. ' early recipients (over ' .. t.failurePercent .. '%)')
    end
  end
  return false
end

-- Keeps one signal's evidence (newest first, capped).
local function keepEvidence(entry)
  redis.call('LPUSH', K_SIGNALS, cjson.encode(entry))
  redis.call('LTRIM', K_SIGNALS, 0, MAX_EVIDENCE - 1)
end

-- The early waves still going: opens the next one when the open one is done (all its recipients
-- sent or failed for good). An empty wave is skipped; after the canary comes the wait, whose end is
-- a timer (store/lua/waves.lua "rest"). Answers the follow-ups.
local function openNextWave(state)
  local due = {}
  local open = num(KEYS[1], 'waveOpen')
  while open < 2 do
    open = open + 1
    local size = num(KEYS[1], 'wave' .. open .. 'Size')
    redis.call('HSET', KEYS[1], 'waveOpen', open, 'waveLeft', size, 'wave' .. open .. 'At', tostring(NOW))
    transition('openWave', state, state, cjson.encode({wave = WAVE_NAMES[open], recipients = size}))
    if size > 0 then
      due[1] = {['do'] = 'startFanout', kind = 'original', recipients = num(KEYS[1], 'recipientCount'), wave = open}
      return due
    end
  end
  local untilMs = NOW + num(KEYS[1], 'waveWaitMs')
  redis.call('HSET', KEYS[1], 'waveWaitUntil', tostring(untilMs))
  audit('canaryWait', state, state, cjson.encode({['until'] = untilMs, handed = num(KEYS[1], 'waveHanded')}))
  publish('progress')
  due[1] = {['do'] = 'scheduleWave', at = untilMs}
  return due
end

-- Opens the rest (everyone left): after the wait, or when ops continue. Answers the follow-ups.
local function openRest(state, action, detail)
  redis.call('HSET', KEYS[1], 'waveOpen', 3, 'wave3At', tostring(NOW))
  transition(action, state, state, cjson.encode(detail))
  return {{['do'] = 'startFanout', kind = 'original', recipients = num(KEYS[1], 'recipientCount'), wave = 3}}
end
