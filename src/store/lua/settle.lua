-- Records the outcome of one SMTP transaction for each of its recipients.
-- Outcomes: s sent, f failed for good (reply kept), t temporary failure (back to the queue, or
-- skipped if the message was recalled meanwhile), a ambiguous (connection lost after DATA: the
-- recipient may have it; retried and counted as a possible duplicate).
-- KEYS as in prologue.lua and fanout-prologue.lua.
-- ARGV[1..4] as there, ARGV[5] the lowest index of the transaction, ARGV[6] one outcome letter per
-- index from there ("." for an index not in this transaction), ARGV[7..] triples index, address,
-- SMTP reply for every outcome other than s (so a transaction that went through sends no address).
local state = field(KEYS[1], 'state')
local target = K_ORIGINAL
if KIND == 'correction' then target = K_CORRECTION end
local stillSending = running(KIND, state)

local base = tonumber(ARGV[5])
local codes = ARGV[6]
local addressAt, replyAt = {}, {}
for i = 7, #ARGV, 3 do
  local p = tonumber(ARGV[i]) - base + 1
  addressAt[p] = ARGV[i + 1]; replyAt[p] = ARGV[i + 2]
end
local current = states(target, base, #codes)

local n = {s = 0, f = 0, back = 0, k = 0}
local finals = {} -- position -> 's' or 'f': settled for good by this call
local replies = {}
local changed = false
for p = 1, #codes do
  local outcome = string.sub(codes, p, p)
  if outcome ~= '.' and current[p] == 'i' then
    if outcome == 'a' then
      markDuplicate(addressAt[p])
      if not stillSending then outcome = 's' end -- maybe delivered, and nothing more will be sent: correct it
    end
    if outcome == 's' then current[p] = 's'; n.s = n.s + 1; changed = true; finals[p] = 's'
    elseif outcome == 'f' then
      current[p] = 'f'; n.f = n.f + 1; changed = true; finals[p] = 'f'
      local k = addressAt[p]
      if KIND == 'correction' then k = 'correction:' .. k end
      replies[#replies + 1] = k; replies[#replies + 1] = replyAt[p]
    elseif outcome == 't' then
      if stillSending then current[p] = false; n.back = n.back + 1
      else current[p] = 'k'; n.k = n.k + 1 end
      changed = true
    end
    -- 'a' while still sending stays 'i': the retry claims it again.
  end
end
if changed then writeStates(target, base, current) end
hsetMany(K_FAILURES, replies)

local followUps = {}
if KIND == 'original' then
  incr('inflight', -(n.s + n.f + n.back + n.k)); incr('sent', n.s); incr('failed', n.f)
  incr('queued', n.back); incr('skipped', n.k)
  -- A staged send's early waves: how many of the open wave are done (sent or failed for good), and
  -- the permanent failures among them (a signal).
  -- (An early recipient of a wave before the open one: a continue opened the canary before the seed
  -- cohort was done. It counts as handed and as a failure signal, not towards the open wave.)
  local open = gatedWave()
  local doneInWave, doneEarly, failedEarly = 0, 0, 0
  if open ~= nil and open > 0 and (n.s + n.f) > 0 then
    local waves = redis.call('GETRANGE', K_WAVES, base, base + #codes - 1)
    for p = 1, #codes do
      local w = waveOf(string.byte(waves, p))
      if finals[p] and w < 3 then
        doneEarly = doneEarly + 1
        if w == open then doneInWave = doneInWave + 1 end
        if finals[p] == 'f' then
          failedEarly = failedEarly + 1
          keepEvidence({kind = 'failure', at = NOW, index = base + p - 1, from = addressAt[p], status = string.sub(replyAt[p] or '', 1, 300)})
        end
      end
    end
    incr('waveHanded', doneEarly)
    incr('signalFailures', failedEarly)
  end
  withFollowUps(followUps, startCorrectionIfQuiet())
  local after = field(KEYS[1], 'state')
  if doneEarly > 0 and canStart('openWave', after) then
    if failedEarly > 0 then haltIfOver('failure') end
    if doneInWave > 0 then
      incr('waveLeft', -doneInWave)
      if num(KEYS[1], 'waveLeft') <= 0 then withFollowUps(followUps, openNextWave(after)) end
    end
  end
else
  incr('correctionInflight', -(n.s + n.f + n.back + n.k)); incr('corrected', n.s); incr('correctionFailed', n.f + n.k)
  finishCorrectionIfDone()
end
progress()
return answer({state = field(KEYS[1], 'state'), followUps = followUps})
