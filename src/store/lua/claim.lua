-- Claims the next SMTP transaction of a fan-out batch: the recipients in index range
-- [ARGV[5], ARGV[6]] that are still to be sent, if the message's state still allows sending and
-- the send-rate bucket has tokens. This check is what makes a recall final: it runs in Redis,
-- atomically ordered with recall.lua, once per transaction (not per recipient).
-- KEYS as in prologue.lua and fanout-prologue.lua.
-- ARGV[1..4] as there, ARGV[5] first index, ARGV[6] last index (inclusive),
-- ARGV[7] send rate per second (all workers), ARGV[8] maximum burst, ARGV[9] the last index of the
-- batch this transaction belongs to (a stopped original looks for leftovers up to there).
-- Answers the claimed recipients' addresses and their indexes (settle.lua is given the indexes).
local first = tonumber(ARGV[5])
local size = tonumber(ARGV[6]) - first + 1
local state = field(KEYS[1], 'state')
-- A staged send while later waves are held back (fanout-prologue.lua): the early waves are a few
-- recipients spread over the whole audience, so the claim looks through the rest of the batch for
-- up to `size` of them (one GETRANGE of each string, at most a batch long) instead of one fixed
-- range, and answers where the next claim starts. Its correction after a recall then, too (only
-- the early waves were sent).
local open = gatedWave()
local scanning = open ~= nil
local n = size
if scanning then n = tonumber(ARGV[9]) - first + 1 end
if n < 1 then n = 1 end
local count = redis.call('ZCARD', K_RECIPIENTS)
if first + n > count then n = math.max(0, count - first) end
local target = K_ORIGINAL
local sts
local claimed, retried = {}, {} -- positions from `first` (1-based)
local variants = nil -- the correction's variant of each claimed recipient, when a purge decides it
local waves = nil
if scanning then waves = redis.call('GETRANGE', K_WAVES, first, first + n - 1) end
-- Whether position p may be claimed in this wave (always, unless scanning).
local function inOpenWave(p)
  if not scanning then return true end
  return waveOf(string.byte(waves, p)) <= open
end
-- The position after which nothing more is looked at (a scan stops once it has `size`).
local looked = n

if KIND == 'original' then
  sts = states(K_ORIGINAL, first, n)
  if not running('original', state) then
    -- Stopped (recalled) or done. Leftovers of an attempt that crashed inside a transaction may
    -- have been delivered: count them as sent, so they get the correction. The batch ends with
    -- this answer, so its whole rest is looked at, not only this transaction's range: a leftover
    -- further on would otherwise stay in flight, and the correction would never start.
    local rest = states(K_ORIGINAL, first, tonumber(ARGV[9]) - first + 1)
    local fixed = 0
    for p = 1, #rest do
      if rest[p] == 'i' then
        rest[p] = 's'
        markDuplicate(redis.call('ZRANGE', K_RECIPIENTS, first + p - 1, first + p - 1)[1])
        fixed = fixed + 1
      end
    end
    if fixed > 0 then writeStates(K_ORIGINAL, first, rest); incr('inflight', -fixed); incr('sent', fixed) end
    return answer({stopped = true, state = state, followUps = withFollowUps({}, startCorrectionIfQuiet())})
  end
  if field(KEYS[1], 'paused') then return answer({paused = true}) end
  -- Released, its waves not planned yet (store/lua/waves.lua begin): nothing may go.
  if open == 0 then return answer({held = true}) end
  for p = 1, n do
    local st = sts[p]
    if inOpenWave(p) then
      if st == false then claimed[#claimed + 1] = p
      elseif st == 'i' then claimed[#claimed + 1] = p; retried[#retried + 1] = p end
    end
    if #claimed >= size then looked = p; break end
  end
else
  if not running('correction', state) or field(KEYS[1], 'correctionStarted') ~= '1' then
    return answer({stopped = true, state = state, followUps = {}})
  end
  if field(KEYS[1], 'paused') then return answer({paused = true}) end
  -- Only those the original reached get the correction.
  local originals = states(K_ORIGINAL, first, n)
  target = K_CORRECTION
  sts = states(K_CORRECTION, first, n)
  for p = 1, n do
    if originals[p] == 's' then
      local st = sts[p]
      if st == false then claimed[#claimed + 1] = p
      elseif st == 'i' then claimed[#claimed + 1] = p; retried[#retried + 1] = p end
    end
    if #claimed >= size then looked = p; break end
  end
  -- The standard correction says whether the original was removed from the recipient's mailbox
  -- (a purge is running): each recipient's waits for the first answer of its purge, at most until
  -- the purge's correction deadline (PURGE_CORRECTION_WAIT_SECONDS after it started). A custom text
  -- goes in the exact bytes a second person approved, without that sentence.
  if #claimed > 0 and field(KEYS[1], 'purgeStartedAt') ~= nil then
    local status = cjson.decode(field(KEYS[1], 'correction') or '{}').status
    if status == 'standard' or status == 'declined' then
      local purges = states(K_PURGE, first, n)
      local late = NOW >= num(KEYS[1], 'purgeCorrectionDeadline')
      variants = {}
      for j, p in ipairs(claimed) do
        local st = purges[p]
        if st == 'p' then variants[j] = 'r'
        elseif st == false or st == 'i' then
          -- Not answered yet: the whole transaction waits (claims go in index order, like the purge),
          -- its job put aside meanwhile so that it holds no worker slot (workers/run-workers.ts).
          if not late then return answer({purgeWait = math.min(5000, num(KEYS[1], 'purgeCorrectionDeadline') - NOW)}) end
          variants[j] = 'k'
        else variants[j] = 'k' end
      end
    end
  end
end
local nextFirst = first + looked
if #claimed == 0 then return answer({claimed = true, addresses = {}, indexes = {}, next = nextFirst}) end

-- Token bucket shared by every worker.
local wait = takeTokens(K_RATE, tonumber(ARGV[7]), tonumber(ARGV[8]), #claimed)
if wait > 0 then return answer({wait = wait}) end

-- The addresses of the claimed positions only (a scan's are a few spread over a batch).
local members = redis.call('ZRANGE', K_RECIPIENTS, first, first + claimed[#claimed] - 1)
local addresses, indexes = {}, {}
for j, p in ipairs(claimed) do
  sts[p] = 'i'
  addresses[j] = members[p]
  indexes[j] = first + p - 1
end
-- Only as far as looked: a scan that stopped early leaves the states after it as they are.
local written = {}
for p = 1, claimed[#claimed] do written[p] = sts[p] end
writeStates(target, first, written)
for _, p in ipairs(retried) do markDuplicate(members[p]) end
local fresh = #claimed - #retried
if KIND == 'original' then
  incr('queued', -fresh); incr('inflight', fresh)
else
  incr('correctionInflight', fresh)
end
local reply = {claimed = true, addresses = addresses, indexes = indexes, next = nextFirst}
-- Early waves (seed cohort, canary) go in their own mail (compose.ts composeStaged), one recipient
-- per transaction with a return path naming it (VERP) when a listener receives the bounces.
if scanning and KIND == 'original' then reply.early = true end
if variants then reply.variants = table.concat(variants) end
return answer(reply)
