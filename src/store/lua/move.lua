-- The plain transitions: reject, withdraw, expire, release — each with
-- one outcome in the lifecycle table. One compare-and-set: the table must let the action start
-- from the current state, the revision must be the expected one (when given), and the action's
-- own condition must hold. Who may take the action is decided by the caller.
-- KEYS: the common ones (prologue.lua).
-- ARGV[1..3] as in prologue.lua, ARGV[4] action, ARGV[5] expected revision or "",
-- ARGV[6] detail (JSON, goes to the audit entry).
local action = ARGV[4]
local state = field(KEYS[1], 'state')
if state == nil then return refuse('not_found') end
if not canStart(action, state) then return refuse('conflict', {state = state}) end
if ARGV[5] ~= '' and field(KEYS[1], 'revision') ~= ARGV[5] then
  return refuse('stale_revision', {state = state, revision = num(KEYS[1], 'revision')})
end

local followUps = {}
if action == 'expire' and NOW < num(KEYS[1], 'expiresAt') then return refuse('not_due', {state = state}) end
if action == 'release' then
  -- The worker's guarantee: a release job that fires early (clock skew, a replayed job) does
  -- nothing but wait again for the stored releaseAt.
  if NOW < num(KEYS[1], 'releaseAt') then
    return refuse('not_due', {state = state, followUps = {{['do'] = 'scheduleRelease',
      revision = num(KEYS[1], 'revision'), at = num(KEYS[1], 'releaseAt')}}})
  end
  redis.call('HSET', KEYS[1], 'queued', num(KEYS[1], 'recipientCount'), 'inflight', 0, 'sent', 0, 'failed', 0,
    'skipped', 0, 'possibleDuplicates', 0, 'releasedAt', tostring(NOW), 'releaseAt', tostring(NOW))
  if field(KEYS[1], 'staged') == '1' then
    -- A staged send: nothing is claimed until its plan of waves is made (waves.lua begin).
    redis.call('HSET', KEYS[1], 'waveOpen', 0)
    followUps[1] = {['do'] = 'planWaves', recipients = num(KEYS[1], 'recipientCount')}
  else
    followUps[1] = {['do'] = 'startFanout', kind = 'original', recipients = num(KEYS[1], 'recipientCount')}
  end
end
if action == 'reject' then
  redis.call('HSET', KEYS[1], 'rejection', cjson.encode({by = ACTOR, at = NOW, reason = cjson.decode(ARGV[6]).reason}))
end

local to = outcome(action, state)
transition(action, state, to, ARGV[6])
return answer({state = to, recipientCount = num(KEYS[1], 'recipientCount'), followUps = followUps})
