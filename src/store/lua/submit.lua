-- Creates a message (mode "create": the `submit` action from `new`), submits a draft (mode
-- "draft": `submit` from `draft`, same revision) or makes a new revision of one (mode "edit"),
-- with its frozen recipient set: the scratch set store/recipient-freeze.ts filled in slices (the
-- lists' members and the explicit addresses), renamed over the message's recipients here, if
-- every list is still the version the copy began with. An edit that keeps the audience and whose
-- lists are unchanged keeps the recipients frozen before ("keep"): nothing is copied again. Who may
-- do it (the author) is decided by the caller; the approvals required come from the caller's policy
-- ladder, looked up here because only here is the count known.
-- KEYS: the common ones (prologue.lua), then recipients zset, the freeze's scratch zset, revisions
-- hash, messages-by-time zset, audience catalogue hash, one sorted set per audience list named in
-- the message.
-- ARGV[1..3] as in prologue.lua, ARGV[4] mode, ARGV[5] message id, ARGV[6] JSON of the message
-- fields (see message-store.ts), ARGV[7] JSON approval ladder [[minRecipients, approvals], ...]
-- ascending (domain/policies.ts), ARGV[8] maximum recipients, ARGV[9] the revision the caller read
-- (edit) or "", ARGV[10] JSON list of the audience names (in the order of their KEYS),
-- ARGV[11] most revisions kept (MAX_REVISIONS: an edit past it is refused), ARGV[12] JSON list of
-- the version of each list the freeze copied, ARGV[13] how many explicit addresses it added,
-- ARGV[14] "keep" to keep the recipients frozen by the current revision (the scratch set is then
-- not used), ARGV[15] the author's choice of waves ("on", "off" or "" for the policy), ARGV[16] the
-- audience size from which the policy stages a send (0: never), ARGV[17] the digest of the message
-- as a staged send (mail/compose.ts composeStaged): the digest approvers see when it is staged,
-- ARGV[18], ARGV[19] with "keep": JSON lists of the explicit addresses the edit adds and drops (a
-- dropped one stays if one of the lists has it).
local K_RECIPIENTS = KEYS[COMMON_KEYS + 1]
local K_SCRATCH = KEYS[COMMON_KEYS + 2]
local K_REVISIONS = KEYS[COMMON_KEYS + 3]
local K_BY_TIME = KEYS[COMMON_KEYS + 4]
local K_CATALOGUE = KEYS[COMMON_KEYS + 5]
local FIRST_LIST = COMMON_KEYS + 6
local KEEP = ARGV[14] == 'keep'
local mode = ARGV[4]
local id = ARGV[5]
local f = cjson.decode(ARGV[6])
local listNames = cjson.decode(ARGV[10])
local action = 'submit'
local from = NEW
if mode ~= 'create' then
  if mode == 'edit' then action = 'edit' end
  from = field(KEYS[1], 'state')
  if from == nil then return refuse('not_found') end
  if not canStart(action, from) then return refuse('conflict', {state = from}) end
  if ARGV[9] ~= '' and field(KEYS[1], 'revision') ~= ARGV[9] then
    return refuse('stale_revision', {state = from, revision = num(KEYS[1], 'revision')})
  end
  -- Each edit keeps a snapshot of up to a few MB: their number is bounded (draft saves keep none).
  if mode == 'edit' and redis.call('HLEN', K_REVISIONS) >= tonumber(ARGV[11]) then
    return refuse('revision_limit', {state = from, revision = num(KEYS[1], 'revision'), count = tonumber(ARGV[11])})
  end
else
  if redis.call('EXISTS', KEYS[1]) == 1 then return refuse('conflict', {state = field(KEYS[1], 'state')}) end
end
local to = outcome(action, from)

-- Everything that could fail is checked before the first write: a script error does not roll back
-- the writes made before it (a half-done freeze would change a pending message's recipients).
for _, name in ipairs({'subject', 'text', 'html', 'markdown', 'template', 'from', 'audience', 'toHeader', 'author',
  'holdSeconds', 'sendAt', 'expiresAt', 'messageId', 'digest'}) do
  if type(f[name]) ~= 'string' then error('submit: field ' .. name .. ' is not a string') end
end
-- Which version of each list is frozen (a catalogue entry without a version predates them: 1), and
-- for a directory audience the resolution that version is (for the approval request).
local versions, resolutions = {}, {}
for i = FIRST_LIST, #KEYS do
  local entry = redis.call('HGET', K_CATALOGUE, listNames[i - FIRST_LIST + 1])
  if entry then
    local e = cjson.decode(entry)
    versions[i] = e.version or 1
    local d = e.directory
    if type(d) == 'table' then
      resolutions[i] = {group = d.group, resolvedAt = d.resolvedAt, first = d.first, added = d.added, removed = d.removed,
        disabled = d.disabled, withoutMail = type(d.withoutMail) == 'table' and d.withoutMail.count or 0, confirmedBy = d.confirmedBy}
    end
  end
end

-- Refused: the scratch set goes (UNLINK: freed in the background, however large).
local function refuseAndDrop(err, extra)
  if not KEEP then redis.call('UNLINK', K_SCRATCH) end
  return refuse(err, extra)
end

for i = FIRST_LIST, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    return refuseAndDrop('unknown_audience', {audience = listNames[i - FIRST_LIST + 1]})
  end
end
-- The copy is of these versions: a list replaced since is another set of people.
local copied = cjson.decode(ARGV[12])
for i = FIRST_LIST, #KEYS do
  if tonumber(copied[i - FIRST_LIST + 1]) ~= tonumber(versions[i] or 1) then
    return refuseAndDrop('audience_changed', {audience = listNames[i - FIRST_LIST + 1]})
  end
end

local count
-- An edit of the explicit addresses only (with "keep"): which of them change the kept set — an added
-- address not in it yet, a dropped one that no list has — found before any write, so the count is exact.
local toAdd, toDrop = {}, {}
if KEEP then
  if mode ~= 'edit' then error('submit: keep is for an edit') end
  for _, a in ipairs(cjson.decode(ARGV[18] or '[]')) do
    if not redis.call('ZSCORE', K_RECIPIENTS, a) then toAdd[#toAdd + 1] = a end
  end
  for _, a in ipairs(cjson.decode(ARGV[19] or '[]')) do
    local listed = false
    for i = FIRST_LIST, #KEYS do
      if redis.call('ZSCORE', KEYS[i], a) then listed = true; break end
    end
    if not listed and redis.call('ZSCORE', K_RECIPIENTS, a) then toDrop[#toDrop + 1] = a end
  end
  count = redis.call('ZCARD', K_RECIPIENTS) + #toAdd - #toDrop
else
  count = redis.call('ZCARD', K_SCRATCH)
end
if count == 0 then return refuseAndDrop('no_recipients') end
if count > tonumber(ARGV[8]) then return refuseAndDrop('too_many_recipients', {count = count}) end
-- Staged (SPEC "Staged sends"): as the author chose, else from the policy's size; decided here
-- because only here is the count known. Its digest covers both mails (early waves and the rest).
local wavesWanted, wavesFrom = ARGV[15] or '', tonumber(ARGV[16] or '0')
local staged = wavesWanted == 'on' or (wavesWanted == '' and wavesFrom > 0 and count >= wavesFrom)
local digest = f.digest
if staged then
  -- Not built by the caller: the lists grew past the threshold after it looked (service stagingChoice).
  -- Nothing is written and the copy is kept: the caller builds the staged mails and submits it again.
  if (ARGV[17] or '') == '' then return refuse('staging_unbuilt', {count = count}) end
  digest = ARGV[17]
end
-- RENAME drops the previous set (an edit's): freed in the background with lazyfree-lazy-server-del.
-- The scratch set's expiry (a freeze abandoned mid-way) goes with a RENAME: the frozen set must never expire.
if not KEEP then redis.call('RENAME', K_SCRATCH, K_RECIPIENTS) end
redis.call('PERSIST', K_RECIPIENTS)
-- The explicit addresses' changes, on the kept set (MAX_EXPLICIT_ADDRESSES each way at most).
for _, a in ipairs(toDrop) do redis.call('ZREM', K_RECIPIENTS, a) end
for i = 1, #toAdd, 1000 do
  local args = {}
  for j = i, math.min(#toAdd, i + 999) do args[#args + 1] = 0; args[#args + 1] = toAdd[j] end
  redis.call('ZADD', K_RECIPIENTS, unpack(args))
end

-- The policy's ladder (domain/policies.ts approvalLadder): the last rung the count reaches.
local required = 0
for _, rung in ipairs(cjson.decode(ARGV[7])) do
  if count >= rung[1] then required = rung[2] end
end


local revision = 1
local createdAt = tostring(NOW)
if mode ~= 'create' then
  createdAt = field(KEYS[1], 'createdAt')
  revision = num(KEYS[1], 'revision')
  -- An edit is a new revision; a submitted draft keeps the revision its author saw.
  if mode == 'edit' then revision = revision + 1 end
end

redis.call('HSET', KEYS[1],
  'id', id, 'revision', revision, 'subject', f.subject, 'text', f.text, 'html', f.html,
  'markdown', f.markdown, 'template', f.template,
  'from', f.from, 'audience', f.audience, 'toHeader', f.toHeader, 'recipientCount', count,
  'author', f.author, 'approvals', '[]', 'requiredApprovals', required, 'holdSeconds', f.holdSeconds,
  'sendAt', f.sendAt, 'releaseAt', '', 'expiresAt', f.expiresAt, 'submittedAt', tostring(NOW),
  'createdAt', createdAt, 'updatedAt', tostring(NOW), 'messageId', f.messageId, 'rejection', '', 'digest', digest,
  'staged', staged and '1' or '0', 'seedAudience', (type(f.seedAudience) == 'string' and f.seedAudience) or '')
-- Each list's size and version as frozen now, for the approval request ("recipients per audience").
local audienceCounts = {}
-- And on the message: the version of each list its recipients are (an edit keeping its audience
-- compares them with the lists' versions now, without reading the revision's snapshot and bodies).
local frozenVersions = {}
for i = FIRST_LIST, #KEYS do
  audienceCounts[#audienceCounts + 1] = {name = listNames[i - FIRST_LIST + 1], count = redis.call('ZCARD', KEYS[i]), version = versions[i], directory = resolutions[i]}
  frozenVersions[listNames[i - FIRST_LIST + 1]] = versions[i] or 1
end
redis.call('HSET', KEYS[1], 'frozenVersions', cjson.encode(frozenVersions))
redis.call('HSET', K_REVISIONS, tostring(revision), cjson.encode({
  revision = revision, subject = f.subject, text = f.text, html = f.html, markdown = f.markdown, template = f.template,
  from = f.from, digest = digest, staged = staged,
  audience = f.audience, recipientCount = count, audienceCounts = audienceCounts, explicitCount = tonumber(ARGV[13]),
  at = NOW, by = ACTOR }))

-- A draft joins the all-messages index when submitted (drafts are their author's).
if mode ~= 'edit' then redis.call('ZADD', K_BY_TIME, createdAt, id) end
transition(action, from, to, cjson.encode({recipientCount = count, requiredApprovals = required, staged = staged}))
return answer({id = id, revision = revision, state = to, recipientCount = count, requiredApprovals = required,
  followUps = {{['do'] = 'scheduleExpiry', revision = revision, at = tonumber(f.expiresAt)}}})
