-- Records the outcome of one SMTP transaction for each of its recipients.
-- Outcomes: s sent, f failed for good (reply kept), t temporary failure (back to the queue, or
-- skipped if the message was recalled meanwhile), a ambiguous (connection lost after DATA: the
-- recipient may have it; retried and counted as a possible duplicate).
-- KEYS as in prologue.lua and fanout-prologue.lua.
-- ARGV[1..4] as there, ARGV[5..] triples: address, outcome, SMTP reply.
local state = field(KEYS[1], 'state')
local target = KEYS[6]
if KIND == 'correction' then target = KEYS[7] end
local stillSending = (KIND == 'original' and state == 'sending') or (KIND == 'correction' and state == 'correcting')

local n = {s = 0, f = 0, back = 0, k = 0}
for i = 5, #ARGV, 3 do
  local addr, outcome, reply = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('HGET', target, addr) == 'i' then
    if outcome == 'a' then
      markDuplicate(addr)
      if not stillSending then outcome = 's' end -- maybe delivered, and nothing more will be sent: correct it
    end
    if outcome == 's' then redis.call('HSET', target, addr, 's'); n.s = n.s + 1
    elseif outcome == 'f' then
      redis.call('HSET', target, addr, 'f'); n.f = n.f + 1
      local k = addr
      if KIND == 'correction' then k = 'correction:' .. addr end
      redis.call('HSET', KEYS[9], k, reply)
    elseif outcome == 't' then
      if stillSending then redis.call('HDEL', target, addr); n.back = n.back + 1
      else redis.call('HSET', target, addr, 'k'); n.k = n.k + 1 end
    end
    -- 'a' while still sending stays 'i': the retry claims it again.
  end
end

local startCorrection = false
if KIND == 'original' then
  incr('inflight', -(n.s + n.f + n.back + n.k)); incr('sent', n.s); incr('failed', n.f)
  incr('queued', n.back); incr('skipped', n.k)
  startCorrection = startCorrectionIfQuiet()
else
  incr('correctionInflight', -(n.s + n.f + n.back + n.k)); incr('corrected', n.s); incr('correctionFailed', n.f + n.k)
  finishCorrectionIfDone()
end
progress()
return answer({ok = true, state = field(KEYS[1], 'state'), startCorrection = startCorrection})
