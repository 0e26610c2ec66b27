-- Claims the next SMTP transaction of a fan-out batch: the recipients in index range
-- [ARGV[5], ARGV[6]] that are still to be sent, if the message's state still allows sending and
-- the send-rate bucket has tokens. This check is what makes a recall final: it runs in Redis,
-- atomically ordered with recall.lua, once per transaction (not per recipient).
-- KEYS as in prologue.lua and fanout-prologue.lua.
-- ARGV[1..4] as there, ARGV[5] first index, ARGV[6] last index (inclusive),
-- ARGV[7] send rate per second (all workers), ARGV[8] maximum burst.
local members = redis.call('ZRANGE', KEYS[5], ARGV[5], ARGV[6])
local state = field(KEYS[1], 'state')
local claimable, retried = {}, {}

if KIND == 'original' then
  if state ~= 'sending' then
    -- Stopped (recalled) or done. Leftovers of an attempt that crashed inside a transaction may
    -- have been delivered: count them as sent, so they get the correction.
    local fixed = 0
    local sts = statuses(KEYS[6], members)
    for i, m in ipairs(members) do
      if sts[i] == 'i' then
        redis.call('HSET', KEYS[6], m, 's'); markDuplicate(m); fixed = fixed + 1
      end
    end
    if fixed > 0 then incr('inflight', -fixed); incr('sent', fixed) end
    return answer({stopped = true, state = state, startCorrection = startCorrectionIfQuiet()})
  end
  local sts = statuses(KEYS[6], members)
  for i, m in ipairs(members) do
    local st = sts[i]
    if st == false then claimable[#claimable + 1] = m
    elseif st == 'i' then claimable[#claimable + 1] = m; retried[#retried + 1] = m end
  end
else
  if state ~= 'correcting' or field(KEYS[1], 'correctionStarted') ~= '1' then
    return answer({stopped = true, state = state})
  end
  local originals = statuses(KEYS[6], members)
  local received = {}
  for i, m in ipairs(members) do
    if originals[i] == 's' then received[#received + 1] = m end
  end
  local sts = statuses(KEYS[7], received)
  for i, m in ipairs(received) do
    local st = sts[i]
    if st == false then claimable[#claimable + 1] = m
    elseif st == 'i' then claimable[#claimable + 1] = m; retried[#retried + 1] = m end
  end
end
if #claimable == 0 then return answer({ok = true, addresses = {}}) end

-- Token bucket shared by every worker, on Redis's own clock so workers' clocks need not agree.
local t = redis.call('TIME')
local nowMs = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate = tonumber(ARGV[7])
local burst = math.max(tonumber(ARGV[8]), #claimable)
local tokens = tonumber(redis.call('HGET', KEYS[10], 'tokens') or burst)
local last = tonumber(redis.call('HGET', KEYS[10], 'at') or nowMs)
tokens = math.min(burst, tokens + (nowMs - last) * rate / 1000)
if tokens < #claimable then
  redis.call('HSET', KEYS[10], 'tokens', tostring(tokens), 'at', nowMs)
  return answer({wait = math.ceil((#claimable - tokens) * 1000 / rate)})
end
redis.call('HSET', KEYS[10], 'tokens', tostring(tokens - #claimable), 'at', nowMs)

local target = KEYS[6]
if KIND == 'correction' then target = KEYS[7] end
local fresh = #claimable - #retried
local flat = {}
for _, m in ipairs(claimable) do flat[#flat + 1] = m; flat[#flat + 1] = 'i' end
hsetMany(target, flat)
for _, m in ipairs(retried) do markDuplicate(m) end
if KIND == 'original' then
  incr('queued', -fresh); incr('inflight', fresh)
else
  incr('correctionInflight', fresh)
end
return answer({ok = true, addresses = claimable})
