-- A draft: saved by its author, not submitted, nobody asked to approve it (SPEC "draft").
-- mode "save": creates one (from `new`) or replaces its fields (a new revision: a submit names the
-- revision it saw); mode "discard": deletes it (back to `new`), its audit trail kept.
-- Nothing is frozen: the recipients are frozen at the submit (submit.lua, mode "draft").
-- Drafts are in the `draft` state index only, not in the all-messages index, until submitted.
-- KEYS: the common ones (prologue.lua), then the revisions hash.
-- ARGV[1..3] as in prologue.lua, ARGV[4] mode, ARGV[5] message id, ARGV[6] JSON of the fields
-- (save), ARGV[7] the revision the caller read or "" (a newer one is `stale_revision`).
local K_REVISIONS = KEYS[COMMON_KEYS + 1]
local mode = ARGV[4]
local id = ARGV[5]
local state = field(KEYS[1], 'state')
local from = state or NEW
local action = 'saveDraft'
if mode == 'discard' then action = 'discard' end
if not canStart(action, from) then
  if state == nil then return refuse('not_found') end
  return refuse('conflict', {state = state})
end
if ARGV[7] ~= '' and field(KEYS[1], 'revision') ~= ARGV[7] then
  return refuse('stale_revision', {state = state, revision = num(KEYS[1], 'revision')})
end
local to = outcome(action, from)

if mode == 'discard' then
  transition(action, from, to, cjson.encode({revision = num(KEYS[1], 'revision')}))
  redis.call('DEL', KEYS[1], K_REVISIONS)
  return answer({id = id, revision = 0, state = to, followUps = {}})
end

local f = cjson.decode(ARGV[6])
local revision = num(KEYS[1], 'revision') + 1
local createdAt = field(KEYS[1], 'createdAt') or tostring(NOW)
redis.call('HSET', KEYS[1],
  'id', id, 'revision', revision, 'subject', f.subject, 'text', f.text, 'html', f.html, 'markdown', f.markdown,
  'template', f.template, 'from', f.from, 'audience', f.audience, 'toHeader', f.toHeader, 'recipientCount', 0,
  'author', f.author, 'approvals', '[]', 'requiredApprovals', 0, 'holdSeconds', f.holdSeconds,
  'sendAt', f.sendAt, 'releaseAt', '', 'expiresAt', '', 'createdAt', createdAt, 'updatedAt', tostring(NOW),
  'messageId', f.messageId, 'rejection', '', 'digest', '')
transition(action, from, to, cjson.encode({revision = revision}))
return answer({id = id, revision = revision, state = to, followUps = {}})
