-- Decides a custom correction text that waits for a second person (SPEC "Correction notice"):
-- approveCorrection (one more approval; with enough, the text is approved), rejectCorrection (the
-- standard correction goes instead), standardCorrection (the recaller switches to it). Each then
-- lets the correction start if the original has stopped (startCorrectionIfQuiet). Who may decide
-- (an approver other than the recaller) is decided by the caller, who read the message: the
-- script commits only if the correction is still pending with the approvals the caller saw.
-- KEYS: the common ones (prologue.lua).
-- ARGV[1..3] as in prologue.lua, ARGV[4] action, ARGV[5] approvals the caller saw,
-- ARGV[6] the digest the caller saw, ARGV[7] detail (JSON: comment or reason).
local action = ARGV[4]
local state = field(KEYS[1], 'state')
if state == nil then return refuse('not_found') end
if not canStart(action, state) then return refuse('conflict', {state = state}) end
local raw = field(KEYS[1], 'correction')
if raw == nil then return refuse('conflict', {state = state}) end
local c = cjson.decode(raw)
if c.status ~= 'pending' then return refuse('not_pending', {state = state}) end
if #c.approvals ~= tonumber(ARGV[5]) or c.digest ~= ARGV[6] then return refuse('stale_read', {state = state}) end
local detail = cjson.decode(ARGV[7])

if action == 'approveCorrection' then
  c.approvals[#c.approvals + 1] = {by = ACTOR, at = NOW, digest = c.digest, comment = detail.comment or ''}
  if #c.approvals >= c.required then c.status = 'approved' end
elseif action == 'rejectCorrection' then
  c.status = 'declined'
  c.rejection = {by = ACTOR, at = NOW, reason = detail.reason or ''}
else
  c.status = 'standard'
end
redis.call('HSET', KEYS[1], 'correction', cjson.encode(c))
transition(action, state, outcome(action, state), cjson.encode({status = c.status, given = #c.approvals,
  required = c.required, digest = c.digest, comment = detail.comment, reason = detail.reason}))
local followUps = withFollowUps({}, startCorrectionIfQuiet())
return answer({state = field(KEYS[1], 'state'), status = c.status, followUps = followUps})
