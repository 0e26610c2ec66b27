-- A staged send's waves and signals (SPEC "Staged sends"; the gating is in fanout-prologue.lua and
-- claim.lua). KEYS as in prologue.lua and fanout-prologue.lua. ARGV[1..3] as in prologue.lua,
-- ARGV[4] "original" (the fan-out prologue's kind), ARGV[5] mode:
-- - "begin": the plan is written (K_WAVES holds each early recipient's wave): ARGV[6] seed cohort
--   size, ARGV[7] canary size, ARGV[8] the canary's seed, ARGV[9] the wait after the canary (ms),
--   ARGV[10] the signal thresholds (JSON). Opens the first wave with anybody in it. Once.
-- - "rest": ARGV[6] "timer" (the wait is over: the rest goes, unless halted) or "continue" (ops: lifts
--   a halt, and starts the next wave now: the canary during the seed cohort, else the rest), ARGV[7]
--   the phase continued from (seed, canary, wait, rest; "" for any).
-- - "signal": ARGV[6] kind (bounce, reply, autoReply, report), ARGV[7] evidence (JSON object),
--   ARGV[8] dedupe key. Counted once per key; halts the send when over its threshold.
local mode = ARGV[5]
local state = field(KEYS[1], 'state')
if state == nil then return refuse('not_found') end

if mode == 'signal' then
  if field(KEYS[1], 'releasedAt') == nil then return refuse('not_sent', {state = state}) end
  local kind = ARGV[6]
  if redis.call('SADD', K_SIGNAL_KEYS, kind .. ':' .. ARGV[8]) == 0 then
    return answer({counted = false, halted = false})
  end
  local counter = ({bounce = 'signalBounces', reply = 'signalReplies', autoReply = 'signalAutoReplies', report = 'signalReports'})[kind]
  if counter == nil then error('waves: unknown signal ' .. tostring(kind)) end
  redis.call('HINCRBY', KEYS[1], counter, 1)
  local entry = cjson.decode(ARGV[7])
  entry.kind = kind
  entry.at = NOW
  keepEvidence(entry)
  audit('signal', state, state, cjson.encode({kind = kind, count = num(KEYS[1], counter), from = entry.from, index = entry.index}))
  local halted = false
  if kind ~= 'autoReply' then halted = haltIfOver(kind) end
  publish('progress')
  return answer({counted = true, halted = halted})
end

if not canStart('openWave', state) then return refuse('conflict', {state = state}) end
local open = field(KEYS[1], 'waveOpen')
if open == nil then return refuse('not_staged', {state = state}) end
open = tonumber(open)

if mode == 'begin' then
  -- Planned already (a planner run twice): its plan stays; this one's copy goes.
  if open ~= 0 then redis.call('UNLINK', K_WAVES_PLAN); return answer({state = state, followUps = {}}) end
  -- The plan written by the planner becomes the waves (none: nobody is early).
  -- RENAME carries the plan key's expiry (a planner that died mid-way leaves nothing for long): the
  -- waves must never expire.
  local seed, canary = tonumber(ARGV[6]), tonumber(ARGV[7])
  if redis.call('EXISTS', K_WAVES_PLAN) == 1 then
    redis.call('RENAME', K_WAVES_PLAN, K_WAVES)
    redis.call('PERSIST', K_WAVES)
  elseif seed + canary > 0 then
    -- Early recipients but no plan (a second planner run dropped it meanwhile): plan again.
    return refuse('plan_missing', {state = state})
  else
    redis.call('DEL', K_WAVES)
  end
  local rest = num(KEYS[1], 'recipientCount') - seed - canary
  redis.call('HSET', KEYS[1], 'wave1Size', seed, 'wave2Size', canary, 'wave3Size', rest, 'canarySeed', ARGV[8],
    'waveWaitMs', ARGV[9], 'signalThresholds', ARGV[10], 'waveHanded', 0)
  audit('wavesPlanned', state, state, cjson.encode({seed = seed, canary = canary, rest = rest, canarySeed = ARGV[8],
    waitMs = tonumber(ARGV[9]), thresholds = cjson.decode(ARGV[10])}))
  return answer({state = state, followUps = openNextWave(state)})
end

if mode == 'rest' then
  local paused = field(KEYS[1], 'paused')
  if ARGV[6] == 'timer' then
    local untilMs = field(KEYS[1], 'waveWaitUntil')
    if open ~= 2 or untilMs == nil then return refuse('conflict', {state = state}) end
    if paused then return refuse('halted', {state = state}) end
    if NOW < tonumber(untilMs) then
      return refuse('not_due', {state = state, followUps = {{['do'] = 'scheduleWave', at = tonumber(untilMs)}}})
    end
    return answer({state = state, followUps = openRest(state, 'openWave', {wave = 'rest', recipients = num(KEYS[1], 'wave3Size')})})
  end
  -- Ops continue: lift the halt (its parked jobs wake) and start the next wave now: the canary
  -- during the seed cohort, the rest during the canary or its wait (the wait is skipped). ARGV[7]:
  -- the phase the person saw ("" for any): a continue from another phase is refused, so that a
  -- retried or doubled continue never moves the send on twice (seed -> canary -> rest).
  if open == 0 then return refuse('planning', {state = state}) end
  local phase = WAVE_NAMES[math.min(open, 3)]
  if open == 2 and field(KEYS[1], 'waveWaitUntil') ~= nil then phase = 'wait' end
  if (ARGV[7] or '') ~= '' and ARGV[7] ~= phase then return refuse('moved_on', {state = state}) end
  if open >= 3 and not paused then return refuse('not_halted', {state = state}) end
  local detail = {wave = WAVE_NAMES[math.min(open, 3)]}
  local followUps = {}
  if paused then
    local was = cjson.decode(paused)
    redis.call('HDEL', KEYS[1], 'paused')
    detail.halt = was.reason
    detail.haltedMs = NOW - was.at
    followUps[#followUps + 1] = wakeFanout('original')
  end
  if open == 1 then
    detail.next = 'canary'
    transition('continue', state, state, cjson.encode(detail))
    withFollowUps(followUps, openNextWave(state))
  elseif open == 2 then
    detail.next = 'rest'
    detail.recipients = num(KEYS[1], 'wave3Size')
    withFollowUps(followUps, openRest(state, 'continue', detail))
  else
    transition('continue', state, state, cjson.encode(detail))
  end
  return answer({state = state, followUps = followUps})
end

error('waves: unknown mode ' .. tostring(mode))
