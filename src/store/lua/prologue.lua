-- Shared by every message script (prepended by store/scripts.ts, after the generated lifecycle
-- table: TRANSITIONS, a string of |action:from:to| entries; STATE_KEY[state]; COMMON_KEYS; NEW; see
-- store/lua-lifecycle.ts). Ask it through canStart, allowed, outcomes and outcome only.
-- KEYS[1] message hash, KEYS[2] message audit stream, KEYS[3] global audit stream,
-- KEYS[4] global audit head (string), KEYS[5 .. COMMON_KEYS - 1] the per-state indexes (sorted sets),
-- in the order of domain/lifecycle.ts STATES, KEYS[COMMON_KEYS] the running purges (sorted set).
-- A script's own keys follow from KEYS[COMMON_KEYS + 1].
-- ARGV[1] events channel, ARGV[2] now (epoch ms), ARGV[3] actor.
-- Every script answers a JSON string: {"ok":true,...} or {"ok":false,"err":"<code>","state":...}
-- (parsed against a schema by store/script-answers.ts). What must follow a change (a release to
-- schedule, a fan-out to start) is named in the answer's followUps, never decided by the caller.
local EVENTS = ARGV[1]
local NOW = tonumber(ARGV[2])
local ACTOR = ARGV[3]

local function field(k, f)
  local v = redis.call('HGET', k, f)
  if v == false then return nil end
  return v
end

local function num(k, f)
  return tonumber(field(k, f) or '0')
end

-- The follow-up that wakes the message's parked batch jobs of `kind` (a pause parks them); for a
-- staged send's original, those of every wave opened so far (the wake takes waves 1..wave).
local function wakeFanout(kind)
  local f = {['do'] = 'wakeFanout', kind = kind, recipients = num(KEYS[1], 'recipientCount')}
  local open = num(KEYS[1], 'waveOpen')
  if kind == 'original' and open > 0 then f.wave = math.min(3, open) end
  return f
end

local function answer(t)
  if t.ok == nil then t.ok = true end
  return cjson.encode(t)
end

local function refuse(err, extra)
  local t = extra or {}
  t.ok = false
  t.err = err
  return cjson.encode(t)
end

-- Whether the lifecycle table lets `action` start from `state`.
local function canStart(action, state)
  return state ~= nil and string.find(TRANSITIONS, '|' .. action .. ':' .. state .. ':', 1, true) ~= nil
end

-- Whether the table lets `action` lead from `from` to `to`.
local function allowed(action, from, to)
  return from ~= nil and to ~= nil and string.find(TRANSITIONS, '|' .. action .. ':' .. from .. ':' .. to .. '|', 1, true) ~= nil
end

-- Every state `action` may lead to from `from`, in the table's order.
local function outcomes(action, from)
  local list = {}
  for to in string.gmatch(TRANSITIONS, '|' .. action .. ':' .. from .. ':([%w_]+)') do list[#list + 1] = to end
  return list
end

-- The one state `action` leads to from `from`, for actions the table gives one outcome there.
local function outcome(action, from)
  local list = outcomes(action, from)
  if #list ~= 1 then error('lifecycle: ' .. action .. ' from ' .. from .. ' has ' .. #list .. ' outcomes, not one') end
  return list[1]
end

-- Appends one audit entry to the message's stream and the global one. Each entry carries the
-- hash of the previous entry of the global chain, so an edit or a gap is detectable. `actor`:
-- who, when not the script's caller (Airlock itself halting a send in a worker's settle).
local function audit(action, from, to, detail, actor)
  actor = actor or ACTOR
  local id = field(KEYS[1], 'id')
  local revision = field(KEYS[1], 'revision') or '0'
  local prev = redis.call('GET', KEYS[4])
  if prev == false then prev = '' end
  local body = table.concat({id, revision, actor, action, from, to, tostring(NOW), detail}, '\n')
  local hash = redis.sha1hex(prev .. '\n' .. body)
  local fields = {'message', id, 'revision', revision, 'actor', actor, 'action', action, 'from', from,
    'to', to, 'at', tostring(NOW), 'detail', detail, 'prev', prev, 'hash', hash}
  redis.call('XADD', KEYS[2], '*', unpack(fields))
  redis.call('XADD', KEYS[3], '*', unpack(fields))
  redis.call('SET', KEYS[4], hash)
end

local function publish(kind)
  redis.call('PUBLISH', EVENTS, cjson.encode({
    kind = kind, id = field(KEYS[1], 'id'), state = field(KEYS[1], 'state'), revision = num(KEYS[1], 'revision'),
    at = NOW }))
end

local function setState(from, to)
  local id = field(KEYS[1], 'id')
  local createdAt = field(KEYS[1], 'createdAt')
  redis.call('HSET', KEYS[1], 'state', to, 'updatedAt', tostring(NOW))
  if to == from then return end
  -- A pause (pause.lua) belongs to the fan-out of one state: a recall or the end of it lifts it.
  redis.call('HDEL', KEYS[1], 'paused')
  if STATE_KEY[from] then redis.call('ZREM', KEYS[STATE_KEY[from]], id) end
  if STATE_KEY[to] then redis.call('ZADD', KEYS[STATE_KEY[to]], createdAt, id) end -- `new`: gone (a discarded draft)
end

-- The one way a message changes state (or records an action that keeps it: approve below the
-- quorum, pause, resume, startCorrection). A pair the table does not allow is a defect of the
-- calling script: it stops here with an error. Scripts check canStart()/allowed() before their
-- first write, so a refusal answers 409 and changes nothing; this check is the backstop.
local function transition(action, from, to, detail, event, actor)
  if not allowed(action, from, to) then
    error('lifecycle: ' .. tostring(action) .. ' ' .. tostring(from) .. ' -> ' .. tostring(to) .. ' is not in the table')
  end
  setState(from, to)
  audit(action, from, to, detail, actor)
  publish(event or 'state')
end

-- The purge of the original from the mailboxes (store/lua/purge.lua), when the recall asked for one
-- (a connector is configured: recall.lua's `purgeWaitMs`): it starts once, when nothing of the
-- original is queued or in flight (those in flight at the recall have settled: whoever is `sent`
-- now is exactly who has it), and only if somebody has it. Recorded in the audit trail.
-- Answers the follow-up that starts the purge jobs, or nil.
local function startPurgeIfQuiet(state)
  if field(KEYS[1], 'purgeWaitMs') == nil or field(KEYS[1], 'purgeStartedAt') ~= nil then return nil end
  local total = num(KEYS[1], 'sent')
  if total == 0 then return nil end
  redis.call('HSET', KEYS[1], 'purgeStartedAt', tostring(NOW), 'purgeActivityAt', tostring(NOW), 'purgeTotal', total,
    'purged', 0, 'purgeNotFound', 0, 'purgeFailed', 0,
    'purgeCorrectionDeadline', tostring(NOW + num(KEYS[1], 'purgeWaitMs')))
  redis.call('ZADD', KEYS[COMMON_KEYS], NOW, field(KEYS[1], 'id'))
  audit('purgeStart', state, state, cjson.encode({recipients = total}))
  publish('progress')
  return {['do'] = 'startPurge', recipients = num(KEYS[1], 'recipientCount')}
end

-- The one start of a correction, for every path that can be the last to see the original stop (a
-- recall, the settle of the last transaction in flight, a refused claim that settled leftovers).
-- It acts once nothing of the original is queued or in flight: a `sending` message is then
-- finished; a `correcting` one starts its purge (startPurgeIfQuiet) and its correction (exactly
-- once: correctionStarted), or, with nobody to correct (every delivery failed for good), is
-- corrected at once. Answers the follow-ups that start the purge and the correction fan-out (a list).
local function startCorrectionIfQuiet()
  local state = field(KEYS[1], 'state')
  local due = {}
  if num(KEYS[1], 'queued') > 0 or num(KEYS[1], 'inflight') > 0 then return due end
  if canStart('finish', state) then
    redis.call('HSET', KEYS[1], 'finishAt', tostring(NOW))
    transition('finish', state, outcome('finish', state), cjson.encode({sent = num(KEYS[1], 'sent'), failed = num(KEYS[1], 'failed')}))
    return due
  end
  if not canStart('startCorrection', state) then return due end
  -- Before the custom correction's approval: removing the mistake from mailboxes waits for nobody.
  local purge = startPurgeIfQuiet(state)
  if purge then due[#due + 1] = purge end
  if field(KEYS[1], 'correctionStarted') == '1' then return due end
  local total = num(KEYS[1], 'sent')
  -- A custom correction text waits for its approval (correction.lua); nobody gets a correction
  -- before. With nobody to correct there is nothing to wait for.
  local correction = field(KEYS[1], 'correction')
  if total > 0 and correction and cjson.decode(correction).status == 'pending' then return due end
  redis.call('HSET', KEYS[1], 'correctionStarted', 1, 'correctionTotal', total, 'corrected', 0,
    'correctionFailed', 0, 'correctionInflight', 0)
  transition('startCorrection', state, state, cjson.encode({recipients = total}))
  if total == 0 then
    transition('finishCorrection', state, outcome('finishCorrection', state), cjson.encode({corrected = 0, failed = 0}))
    return due
  end
  local recall = field(KEYS[1], 'recall')
  local sinceRecallMs = 0
  if recall then sinceRecallMs = math.max(0, NOW - tonumber(cjson.decode(recall).at)) end
  due[#due + 1] = {['do'] = 'startFanout', kind = 'correction', recipients = num(KEYS[1], 'recipientCount'), sinceRecallMs = sinceRecallMs,
    revision = num(KEYS[1], 'revision')}
  return due
end

-- `list` plus every follow-up of `items` (those that are due, possibly none).
local function withFollowUps(list, items)
  for _, item in ipairs(items) do list[#list + 1] = item end
  return list
end

-- Takes `n` tokens from the token bucket hash `key` (refilled at `rate` a second up to `burst`),
-- on Redis's own clock so that workers' clocks need not agree. Answers 0 when taken, else the ms
-- to wait until enough have refilled (nothing is taken then).
local function takeTokens(key, rate, burst, n)
  local t = redis.call('TIME')
  local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  burst = math.max(burst, n)
  local tokens = tonumber(redis.call('HGET', key, 'tokens') or burst)
  local last = tonumber(redis.call('HGET', key, 'at') or nowMs)
  tokens = math.min(burst, tokens + (nowMs - last) * rate / 1000)
  if tokens < n then
    redis.call('HSET', key, 'tokens', tostring(tokens), 'at', nowMs)
    return math.ceil((n - tokens) * 1000 / rate)
  end
  redis.call('HSET', key, 'tokens', tostring(tokens - n), 'at', nowMs)
  return 0
end
