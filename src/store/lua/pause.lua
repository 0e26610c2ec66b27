-- Pause or resume a running fan-out (the original's or the correction's). A pause is a flag on the
-- message, not a state: the state stays `sending` or `correcting`. While it is set, claim.lua
-- answers `paused`, and each batch job puts itself in BullMQ's delayed set (not holding a worker)
-- to look again later; transactions already claimed finish and settle. Resume clears the flag (and
-- the service wakes the delayed jobs). The same jobs carry on, so a range never has two live jobs.
-- Any state change (recall, finish) also clears the flag (prologue.lua setState).
-- KEYS[1..4] as in prologue.lua.
-- ARGV[1..3] as in prologue.lua, ARGV[4] action (pause | resume), ARGV[5] allowed from-states,
-- ARGV[6] reason (pause).
local action = ARGV[4]
local state = field(KEYS[1], 'state')
if state == nil then return answer({err = 'not_found'}) end
if not stateAllowed(state, ARGV[5]) then return answer({err = 'conflict', state = state}) end
local paused = field(KEYS[1], 'paused')

if action == 'pause' then
  if paused then return answer({err = 'already_paused', state = state}) end
  redis.call('HSET', KEYS[1], 'paused', cjson.encode({by = ACTOR, at = NOW, reason = ARGV[6]}), 'updatedAt', tostring(NOW))
  local progress
  if state == 'sending' then
    progress = {sent = num(KEYS[1], 'sent'), queued = num(KEYS[1], 'queued'), inFlight = num(KEYS[1], 'inflight')}
  else
    progress = {corrected = num(KEYS[1], 'corrected'), inFlight = num(KEYS[1], 'correctionInflight')}
  end
  audit('pause', state, state, cjson.encode({reason = ARGV[6], progress = progress}))
else
  if not paused then return answer({err = 'not_paused', state = state}) end
  local was = cjson.decode(paused)
  redis.call('HDEL', KEYS[1], 'paused')
  redis.call('HSET', KEYS[1], 'updatedAt', tostring(NOW))
  audit('resume', state, state, cjson.encode({pausedBy = was.by, pausedMs = NOW - was.at}))
end
publish('state')
return answer({ok = true, state = state, recipientCount = num(KEYS[1], 'recipientCount')})
