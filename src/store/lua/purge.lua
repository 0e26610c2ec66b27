-- The purge of a recalled original from its recipients' mailboxes (SPEC "Recall into the
-- mailboxes"): which recipients a purge job takes next, and what each purge answered. Started by
-- startPurgeIfQuiet (prologue.lua), carried out by workers/purge.ts through a connector.
-- KEYS as in prologue.lua and fanout-prologue.lua. ARGV[1..3] as in prologue.lua, ARGV[4] "purge",
-- ARGV[5] mode: "claim" or "settle".
--
-- Purge states, one byte per recipient index (K_PURGE): zero = nothing to do or not yet, i = being
-- purged (or an attempt cut off by a crash: taken again), p = purged, n / f = not found / failed,
-- to be tried again, N / F = not found / failed for good (counted). Only recipients whose original
-- is `s` (sent) are ever purged: the recipients never handed the message have no purge state.
--
-- claim: ARGV[6] first index to look at, ARGV[7] last index of the job's range, ARGV[8] most
-- recipients to take, ARGV[9] purges per second (all workers), ARGV[10] burst, ARGV[11] "1" to take
-- those to be tried again (n, f) too. Answers {claimed, addresses, indexes, next, startedAt},
-- {wait = ms} (the purge-rate bucket is empty) or {stopped} (no purge running).
-- settle: ARGV[6] "1" once the time for retries is over (n and f become N and F), then quadruples
-- index, outcome (p purged, n not found, f failed and may be retried, F failed for good), address,
-- reason. Answers {ended}: whether this settle ended the purge.
local MODE = ARGV[5]
if field(KEYS[1], 'purgeStartedAt') == nil or field(KEYS[1], 'purgeEndedAt') ~= nil then
  return answer({stopped = true})
end

if MODE == 'claim' then
  local first, last, max = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  local again = ARGV[11] == '1'
  if first > last then return answer({claimed = true, addresses = {}, indexes = {}, next = first, startedAt = num(KEYS[1], 'purgeStartedAt')}) end
  local n = last - first + 1
  local originals = states(K_ORIGINAL, first, n)
  local purges = states(K_PURGE, first, n)
  local taken = {}
  local next = last + 1
  for p = 1, n do
    if originals[p] == 's' then
      local st = purges[p]
      if st == false or st == 'i' or (again and (st == 'n' or st == 'f')) then
        if #taken == max then next = first + p - 1; break end
        taken[#taken + 1] = p
      end
    end
  end
  if #taken > 0 then
    local wait = takeTokens(K_PURGE_RATE, tonumber(ARGV[9]), tonumber(ARGV[10]), #taken)
    if wait > 0 then return answer({wait = wait}) end
  end
  local addresses, indexes = {}, {}
  for j, p in ipairs(taken) do
    indexes[j] = first + p - 1
    addresses[j] = redis.call('ZRANGE', K_RECIPIENTS, indexes[j], indexes[j])[1]
    redis.call('SETRANGE', K_PURGE, indexes[j], 'i')
  end
  if #taken > 0 then redis.call('HSET', KEYS[1], 'purgeActivityAt', tostring(NOW)) end
  return answer({claimed = true, addresses = addresses, indexes = indexes, next = next, startedAt = num(KEYS[1], 'purgeStartedAt')})
end

if MODE ~= 'settle' then error('purge.lua: unknown mode ' .. tostring(MODE)) end
local final = ARGV[6] == '1'
local purged, notFound, failed = 0, 0, 0
local reasons, cleared = {}, {}
for i = 7, #ARGV, 4 do
  local index, outcome, address, reason = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local cur = states(K_PURGE, index, 1)[1]
  local to = nil
  if outcome == 'p' then
    -- Removed: whatever was recorded before (an overlapping attempt that found nothing, because this
    -- one had removed it meanwhile) gives way, and its count with it.
    if cur ~= 'p' then
      to = 'p'
      purged = purged + 1
      if cur == 'N' then notFound = notFound - 1 elseif cur == 'F' then failed = failed - 1 end
      cleared[#cleared + 1] = address
    end
  elseif cur ~= 'p' and cur ~= 'N' and cur ~= 'F' then
    -- Not found or failed never overwrites a purge, nor an outcome already final: a repeated purge
    -- after a crash answers not found for a message an earlier attempt removed.
    to = outcome
    if outcome == 'n' and final then to = 'N' end
    if outcome == 'f' and final then to = 'F' end
    if to == 'N' then notFound = notFound + 1 elseif to == 'F' then failed = failed + 1 end
    if to == 'f' or to == 'F' then reasons[#reasons + 1] = address; reasons[#reasons + 1] = reason end
  end
  if to then redis.call('SETRANGE', K_PURGE, index, to) end
end
if #cleared > 0 then redis.call('HDEL', K_PURGE_FAILURES, unpack(cleared)) end
hsetMany(K_PURGE_FAILURES, reasons)
incr('purged', purged); incr('purgeNotFound', notFound); incr('purgeFailed', failed)
redis.call('HSET', KEYS[1], 'purgeActivityAt', tostring(NOW))
local ended = false
local done = num(KEYS[1], 'purged') + num(KEYS[1], 'purgeNotFound') + num(KEYS[1], 'purgeFailed')
if done >= num(KEYS[1], 'purgeTotal') then
  local state = field(KEYS[1], 'state')
  redis.call('HSET', KEYS[1], 'purgeEndedAt', tostring(NOW))
  redis.call('ZREM', KEYS[COMMON_KEYS], field(KEYS[1], 'id'))
  audit('purgeEnd', state, state, cjson.encode({purged = num(KEYS[1], 'purged'), notFound = num(KEYS[1], 'purgeNotFound'),
    failed = num(KEYS[1], 'purgeFailed')}))
  ended = true
  publish('progress')
else
  progress()
end
return answer({ended = ended})
