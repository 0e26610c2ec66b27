-- Pause or resume a running fan-out (the original's or the correction's). A pause is a flag on the
-- message, not a state: the lifecycle table lists both as self-transitions. While it is set,
-- claim.lua answers `paused`, and each batch job puts itself in BullMQ's delayed set (not holding a
-- worker) to look again later; transactions already claimed finish and settle. Resume clears the
-- flag and names the follow-up that wakes the delayed jobs. The same jobs carry on, so a range
-- never has two live jobs. Any state change (recall, finish) also clears the flag (setState).
-- KEYS: the common ones (prologue.lua).
-- ARGV[1..3] as in prologue.lua, ARGV[4] action (pause | resume), ARGV[5] reason (pause).
local action = ARGV[4]
local state = field(KEYS[1], 'state')
if state == nil then return refuse('not_found') end
if not canStart(action, state) then return refuse('conflict', {state = state}) end
local paused = field(KEYS[1], 'paused')
-- The original's fan-out runs while `finish` may still come; otherwise it is the correction's.
local original = canStart('finish', state)
local followUps = {}

if action == 'pause' then
  if paused then return refuse('already_paused', {state = state}) end
  redis.call('HSET', KEYS[1], 'paused', cjson.encode({by = ACTOR, at = NOW, reason = ARGV[5]}))
  local progress
  if original then
    progress = {sent = num(KEYS[1], 'sent'), queued = num(KEYS[1], 'queued'), inFlight = num(KEYS[1], 'inflight')}
  else
    progress = {corrected = num(KEYS[1], 'corrected'), inFlight = num(KEYS[1], 'correctionInflight')}
  end
  transition('pause', state, state, cjson.encode({reason = ARGV[5], progress = progress}))
else
  if not paused then return refuse('not_paused', {state = state}) end
  local was = cjson.decode(paused)
  redis.call('HDEL', KEYS[1], 'paused')
  transition('resume', state, state, cjson.encode({pausedBy = was.by, pausedMs = NOW - was.at}))
  local kind = 'correction'
  if original then kind = 'original' end
  followUps[1] = wakeFanout(kind)
  local open = field(KEYS[1], 'waveOpen')
  -- Resumed during (or after) the wait after the canary: its timer, refused while halted, comes again.
  local untilMs = field(KEYS[1], 'waveWaitUntil')
  if original and open == '2' and untilMs ~= nil then
    followUps[2] = {['do'] = 'scheduleWave', at = math.max(NOW, tonumber(untilMs))}
  end
end
return answer({state = state, followUps = followUps})
