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

local addrs = {}
for i = 5, #ARGV, 3 do addrs[#addrs + 1] = ARGV[i] end
local current = statuses(target, addrs)

-- Collected, then written with one HSET / HDEL per key.
local n = {s = 0, f = 0, back = 0, k = 0}
local set, back, replies = {}, {}, {}
for j, addr in ipairs(addrs) do
  local i = 5 + (j - 1) * 3
  local outcome, reply = ARGV[i + 1], ARGV[i + 2]
  if current[j] == 'i' then
    if outcome == 'a' then
      markDuplicate(addr)
      if not stillSending then outcome = 's' end -- maybe delivered, and nothing more will be sent: correct it
    end
    if outcome == 's' then set[#set + 1] = addr; set[#set + 1] = 's'; n.s = n.s + 1
    elseif outcome == 'f' then
      set[#set + 1] = addr; set[#set + 1] = 'f'; n.f = n.f + 1
      local k = addr
      if KIND == 'correction' then k = 'correction:' .. addr end
      replies[#replies + 1] = k; replies[#replies + 1] = reply
    elseif outcome == 't' then
      if stillSending then back[#back + 1] = addr; n.back = n.back + 1
      else set[#set + 1] = addr; set[#set + 1] = 'k'; n.k = n.k + 1 end
    end
    -- 'a' while still sending stays 'i': the retry claims it again.
  end
end
hsetMany(target, set)
hsetMany(KEYS[9], replies)
if #back > 0 then redis.call('HDEL', target, unpack(back)) end

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
