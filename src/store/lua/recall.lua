-- Recall: one atomic state change. Once this has run, every later claim of a fan-out
-- transaction is refused (claim.lua checks the state), so no further recipient is handed to SMTP.
-- Recipients already claimed (in an SMTP transaction now) count as delivered and get the correction.
-- KEYS[1..4] as in prologue.lua.
-- ARGV[1..3] as in prologue.lua, ARGV[4] allowed from-states, ARGV[5] reason, ARGV[6] correction text.
local state = field(KEYS[1], 'state')
if state == nil then return answer({err = 'not_found'}) end
if not stateAllowed(state, ARGV[4]) then return answer({err = 'conflict', state = state}) end

local delivered = num(KEYS[1], 'sent') + num(KEYS[1], 'inflight')
-- The state change below lifts a pause (setState): the service then wakes the jobs it had parked.
local liftedPause = field(KEYS[1], 'paused') ~= nil
local to = 'correcting'
if state == 'scheduled' or (state == 'sending' and delivered == 0) then to = 'recalled' end

redis.call('HSET', KEYS[1], 'recall', cjson.encode({by = ACTOR, at = NOW, reason = ARGV[5], correctionText = ARGV[6],
  deliveredAtRecall = delivered}))
-- Whatever is still queued is never sent; each batch sees it as skipped.
redis.call('HSET', KEYS[1], 'skipped', num(KEYS[1], 'skipped') + num(KEYS[1], 'queued'), 'queued', 0)
if state == 'scheduled' then redis.call('HSET', KEYS[1], 'skipped', num(KEYS[1], 'recipientCount')) end

local startCorrection = false
if to == 'correcting' and num(KEYS[1], 'inflight') == 0 then
  redis.call('HSET', KEYS[1], 'correctionStarted', 1, 'correctionTotal', num(KEYS[1], 'sent'), 'corrected', 0,
    'correctionFailed', 0, 'correctionInflight', 0)
  startCorrection = true
end
transition('recall', state, to, cjson.encode({reason = ARGV[5], correctionText = ARGV[6], delivered = delivered}))
if startCorrection then audit('startCorrection', to, to, cjson.encode({recipients = num(KEYS[1], 'sent')})) end
return answer({ok = true, state = to, delivered = delivered, startCorrection = startCorrection, liftedPause = liftedPause})
