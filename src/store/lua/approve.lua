-- Records one approval of one revision. The caller decided, from the message it read and the
-- policies (domain/policies.ts), that this approver may approve, which state follows and when the
-- release is due; this script commits that only if the message is still what the caller read:
-- the same revision and the same number of approvals (else `stale_read`: read again, decide again).
-- KEYS: the common ones (prologue.lua).
-- ARGV[1..3] as in prologue.lua, ARGV[4] revision approved, ARGV[5] approvals the caller saw,
-- ARGV[6] the state that follows, ARGV[7] releaseAt (epoch ms) when it schedules, else "",
-- ARGV[8] comment, ARGV[9] the digest of the revision as the caller read it (stored with the approval).
local state = field(KEYS[1], 'state')
if state == nil then return refuse('not_found') end
if not canStart('approve', state) then return refuse('conflict', {state = state}) end
-- Past its approval time-to-live the request is over, whether or not the expiry job has run yet.
if NOW >= num(KEYS[1], 'expiresAt') then return refuse('conflict', {state = state}) end
if field(KEYS[1], 'revision') ~= ARGV[4] then
  return refuse('stale_revision', {state = state, revision = num(KEYS[1], 'revision')})
end
local approvals = cjson.decode(field(KEYS[1], 'approvals'))
if #approvals ~= tonumber(ARGV[5]) then return refuse('stale_read', {state = state}) end
if field(KEYS[1], 'digest') ~= ARGV[9] then return refuse('stale_read', {state = state}) end
local to = ARGV[6]
if not allowed('approve', state, to) then return refuse('conflict', {state = state}) end

approvals[#approvals + 1] = {by = ACTOR, at = NOW, comment = ARGV[8], digest = ARGV[9]}
redis.call('HSET', KEYS[1], 'approvals', cjson.encode(approvals), 'updatedAt', tostring(NOW))
local detail = {comment = ARGV[8], given = #approvals, required = num(KEYS[1], 'requiredApprovals'), digest = ARGV[9]}
local followUps = {}
if to == state then
  transition('approve', state, to, cjson.encode(detail), 'approval')
else
  local releaseAt = tonumber(ARGV[7])
  detail.releaseAt = releaseAt
  redis.call('HSET', KEYS[1], 'releaseAt', ARGV[7], 'approvedAt', tostring(NOW))
  transition('approve', state, to, cjson.encode(detail))
  followUps[1] = {['do'] = 'scheduleRelease', revision = num(KEYS[1], 'revision'), at = releaseAt}
end
return answer({state = to, given = detail.given, required = detail.required, revision = num(KEYS[1], 'revision'),
  followUps = followUps})
