-- Claims the next SMTP transaction of a fan-out batch: the recipients in index range
-- [ARGV[5], ARGV[6]] that are still to be sent, if the message's state still allows sending and
-- the send-rate bucket has tokens. This check is what makes a recall final: it runs in Redis,
-- atomically ordered with recall.lua, once per transaction (not per recipient).
-- KEYS as in prologue.lua and fanout-prologue.lua.
-- ARGV[1..4] as there, ARGV[5] first index, ARGV[6] last index (inclusive),
-- ARGV[7] send rate per second (all workers), ARGV[8] maximum burst, ARGV[9] the last index of the
-- batch this transaction belongs to (a stopped original looks for leftovers up to there), ARGV[10]
-- the wave of the batch job (a staged send's original: 1 seed cohort, 2 canary, 3 the rest; "" else).
-- Answers the claimed recipients' addresses and their indexes (settle.lua is given the indexes).
local first = tonumber(ARGV[5])
local size = tonumber(ARGV[6]) - first + 1
local state = field(KEYS[1], 'state')
-- A staged send (fanout-prologue.lua): each wave has batch jobs of its own over the whole index
-- range, and a job claims only the recipients of its own wave, so that two live jobs of one range
-- (a canary job and a rest job after ops continued) never take the same recipient. A job of a wave
-- not open yet claims nothing. The early waves are a few recipients spread over the audience: their
-- jobs look through the rest of the batch for up to `size` of them (one GETRANGE of each string, a
-- batch long at most) and answer where the next claim starts. So does the correction while the
-- early waves were all that was sent.
local waveOpen = field(KEYS[1], 'waveOpen')
local staged = waveOpen ~= nil
if staged then waveOpen = tonumber(waveOpen) end
local jobWave = tonumber(ARGV[10] or '')
local scanning
if KIND == 'original' then scanning = staged and jobWave ~= nil and jobWave < 3
else scanning = staged and waveOpen < 3 end
local n = size
if scanning then n = tonumber(ARGV[9]) - first + 1 end
if n < 1 then n = 1 end
local count = redis.call('ZCARD', K_RECIPIENTS)
if first + n > count then n = math.max(0, count - first) end
local target = K_ORIGINAL
local sts
local claimed, retried = {}, {} -- positions from `first` (1-based)
local variants = nil -- the correction's variant of each claimed recipient, when a purge decides it
-- Whether position p of `waves` (a GETRANGE from `first`) is this job's: always, but for a staged
-- send's original, whose job takes its own wave only.
local function mine(waves, p)
  if KIND ~= 'original' or not staged then return true end
  return waveOf(string.byte(waves, p)) == jobWave
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
    -- A staged send: only this job's wave (another wave's live job settles its own); a job without
    -- a wave (one queued before batch jobs named their wave) takes every wave's leftovers.
    local restWaves = ''
    if staged then restWaves = redis.call('GETRANGE', K_WAVES, first, tonumber(ARGV[9])) end
    local fixed = 0
    for p = 1, #rest do
      if rest[p] == 'i' and (jobWave == nil or mine(restWaves, p)) then
        rest[p] = 's'
        markDuplicate(redis.call('ZRANGE', K_RECIPIENTS, first + p - 1, first + p - 1)[1])
        fixed = fixed + 1
      end
    end
    if fixed > 0 then writeStates(K_ORIGINAL, first, rest); incr('inflight', -fixed); incr('sent', fixed) end
    return answer({stopped = true, state = state, followUps = withFollowUps({}, startCorrectionIfQuiet())})
  end
  if field(KEYS[1], 'paused') then return answer({paused = true}) end
  -- Released, its waves not planned yet (store/lua/waves.lua begin), or this job's wave is not
  -- open yet (a job without a wave: none of a staged send's): nothing may go.
  if staged and (jobWave == nil or jobWave > waveOpen) then return answer({held = true}) end
  -- Read only once the job may claim (a stopped, paused or held job needs none of it).
  local waves = ''
  if staged then waves = redis.call('GETRANGE', K_WAVES, first, first + n - 1) end
  for p = 1, n do
    local st = sts[p]
    if mine(waves, p) then
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
if variants then reply.variants = table.concat(variants) end
return answer(reply)
