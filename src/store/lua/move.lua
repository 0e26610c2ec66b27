-- The plain transitions: reject, withdraw, expire, release, finish, finishCorrection.
-- One compare-and-set: the state must be one of the allowed, the revision the expected one
-- (when given), and the action's own condition must hold.
-- KEYS[1..4] as in prologue.lua.
-- ARGV[1..3] as in prologue.lua, ARGV[4] action, ARGV[5] allowed from-states, ARGV[6] to-state,
-- ARGV[7] expected revision or "", ARGV[8] detail (JSON, goes to the audit entry).
local action = ARGV[4]
local state = field(KEYS[1], 'state')
if state == nil then return answer({err = 'not_found'}) end
if not stateAllowed(state, ARGV[5]) then return answer({err = 'conflict', state = state}) end
if ARGV[7] ~= '' and field(KEYS[1], 'revision') ~= ARGV[7] then return answer({err = 'stale_revision', state = state}) end

if action == 'withdraw' and field(KEYS[1], 'author') ~= ACTOR then return answer({err = 'not_author'}) end
if action == 'expire' and NOW < num(KEYS[1], 'expiresAt') then return answer({err = 'not_due', state = state}) end
if action == 'release' then
  -- The worker's guarantee: a release job that fires early (clock skew, a replayed job) does nothing.
  if NOW < num(KEYS[1], 'releaseAt') then return answer({err = 'not_due', state = state}) end
  redis.call('HSET', KEYS[1], 'queued', num(KEYS[1], 'recipientCount'), 'inflight', 0, 'sent', 0, 'failed', 0,
    'skipped', 0, 'possibleDuplicates', 0, 'releasedAt', tostring(NOW))
end
if action == 'finish' and (num(KEYS[1], 'queued') > 0 or num(KEYS[1], 'inflight') > 0) then
  return answer({err = 'not_done', state = state})
end
if action == 'reject' then
  redis.call('HSET', KEYS[1], 'rejection', cjson.encode({by = ACTOR, at = NOW, reason = cjson.decode(ARGV[8]).reason}))
end
if action == 'release' or action == 'finish' then redis.call('HSET', KEYS[1], action .. 'At', tostring(NOW)) end

transition(action, state, ARGV[6], ARGV[8])
return answer({ok = true, state = ARGV[6], recipientCount = num(KEYS[1], 'recipientCount')})
