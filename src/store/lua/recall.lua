-- Recall: one atomic state change. Once this has run, every later claim of a fan-out
-- transaction is refused (claim.lua checks the state), so no further recipient is handed to SMTP.
-- Recipients already claimed (in an SMTP transaction now) count as delivered and get the correction.
-- Who may recall is decided by the caller.
-- KEYS: the common ones (prologue.lua).
-- ARGV[1..3] as in prologue.lua, ARGV[4] reason, ARGV[5] correction text (custom, or "" for the
-- standard correction), ARGV[6] approvals the custom text needs (0: it goes at once), ARGV[7] when a
-- purge connector is configured, how long (ms) the standard correction may wait for a recipient's
-- purge to answer (else ""): the purge starts with the correction (startPurgeIfQuiet). The custom
-- correction's digest is recorded right after (correction-digest.lua): building a mail must never
-- delay the stop.
local state = field(KEYS[1], 'state')
if state == nil then return refuse('not_found') end
if not canStart('recall', state) then return refuse('conflict', {state = state}) end

local delivered = num(KEYS[1], 'sent') + num(KEYS[1], 'inflight')
-- Nobody was handed the original (nothing sent, failed for good, or in an SMTP transaction): the
-- recall ends it. Otherwise a correction follows; with nobody who received it (every delivery
-- failed for good) it finishes at once with zero corrections (startCorrectionIfQuiet).
local handed = delivered + num(KEYS[1], 'failed')
local to = nil
for _, candidate in ipairs(outcomes('recall', state)) do
  local endsIt = not canStart('startCorrection', candidate)
  if (handed == 0) == endsIt then to = candidate end
end
if to == nil then return refuse('conflict', {state = state}) end
-- The state change below lifts a pause (setState): the jobs it had parked must be woken.
local liftedPause = field(KEYS[1], 'paused') ~= nil

redis.call('HSET', KEYS[1], 'recall', cjson.encode({by = ACTOR, at = NOW, reason = ARGV[4], correctionText = ARGV[5],
  deliveredAtRecall = delivered}))
-- Which correction goes: the standard one, or a custom text once approved by someone else.
local correction = {status = 'standard', text = '', required = 0, approvals = {}, digest = '', proposedBy = ACTOR}
if ARGV[5] ~= '' and canStart('startCorrection', to) then
  correction.text = ARGV[5]
  correction.required = tonumber(ARGV[6])
  correction.status = 'pending'
  if correction.required == 0 then correction.status = 'approved' end
end
redis.call('HSET', KEYS[1], 'correction', cjson.encode(correction))
if ARGV[7] ~= '' then redis.call('HSET', KEYS[1], 'purgeWaitMs', ARGV[7]) end
-- Whatever is still queued is never sent; each batch sees it as skipped. Before the release
-- nothing was queued yet: every recipient is skipped.
if field(KEYS[1], 'releasedAt') == nil then
  redis.call('HSET', KEYS[1], 'skipped', num(KEYS[1], 'recipientCount'), 'queued', 0)
else
  redis.call('HSET', KEYS[1], 'skipped', num(KEYS[1], 'skipped') + num(KEYS[1], 'queued'), 'queued', 0)
end
transition('recall', state, to, cjson.encode({reason = ARGV[4], correctionText = ARGV[5], delivered = delivered,
  correction = correction.status}))

local followUps = withFollowUps({}, startCorrectionIfQuiet())
if #followUps == 0 and liftedPause and canStart('startCorrection', to) then
  -- A transaction is still in flight, so the correction starts from the original's batch jobs,
  -- which the pause had parked for PAUSE_RECHECK_MS: wake them.
  followUps[1] = wakeFanout('original')
end
return answer({state = field(KEYS[1], 'state'), delivered = delivered, followUps = followUps})
