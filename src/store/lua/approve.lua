-- Records one approval of one revision; schedules the message once enough distinct approvers
-- (none of them the author) have approved.
-- KEYS[1..4] as in prologue.lua.
-- ARGV[1..3] as in prologue.lua, ARGV[4] allowed from-states, ARGV[5] revision approved,
-- ARGV[6] comment.
local state = field(KEYS[1], 'state')
if state == nil then return answer({err = 'not_found'}) end
if not stateAllowed(state, ARGV[4]) then return answer({err = 'conflict', state = state}) end
if field(KEYS[1], 'revision') ~= ARGV[5] then return answer({err = 'stale_revision', state = state}) end
if field(KEYS[1], 'author') == ACTOR then return answer({err = 'self_approval'}) end
local approvals = cjson.decode(field(KEYS[1], 'approvals'))
for _, a in ipairs(approvals) do
  if a.by == ACTOR then return answer({err = 'already_approved'}) end
end
approvals[#approvals + 1] = {by = ACTOR, at = NOW, comment = ARGV[6]}
redis.call('HSET', KEYS[1], 'approvals', cjson.encode(approvals), 'updatedAt', tostring(NOW))

local required = num(KEYS[1], 'requiredApprovals')
if #approvals < required then
  audit('approve', state, state, cjson.encode({comment = ARGV[6], given = #approvals, required = required}))
  publish('approval')
  return answer({ok = true, state = state, given = #approvals, required = required})
end

-- releaseAt = max(approvedAt + hold, sendAt), as domain/policies.ts releaseAt().
local releaseAt = NOW + num(KEYS[1], 'holdSeconds') * 1000
local sendAt = tonumber(field(KEYS[1], 'sendAt') or '')
if sendAt ~= nil and sendAt > releaseAt then releaseAt = sendAt end
redis.call('HSET', KEYS[1], 'releaseAt', string.format('%d', releaseAt), 'approvedAt', tostring(NOW))
transition('approve', state, 'scheduled', cjson.encode({comment = ARGV[6], given = #approvals, required = required,
  releaseAt = releaseAt}))
return answer({ok = true, state = 'scheduled', given = #approvals, required = required, releaseAt = releaseAt})
