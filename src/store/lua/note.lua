-- Appends an audit entry that changes no state: a notification sent or failed, a reminder due.
-- KEYS: the common ones (prologue.lua).
-- ARGV[1..3] as in prologue.lua, ARGV[4] action, ARGV[5] detail (JSON), ARGV[6] a "once" field of the
-- message hash or "": when given, the entry is written only if that field is not set yet (and sets it),
-- so a reminder is recorded once per revision however many sweeps see it due. ARGV[7] the revision the
-- caller saw, or "": an entry about a revision that was replaced meanwhile is not written.
local state = field(KEYS[1], 'state')
if state == nil then return refuse('not_found') end
if ARGV[7] ~= '' and field(KEYS[1], 'revision') ~= ARGV[7] then return refuse('stale_revision', {state = state}) end
if ARGV[6] ~= '' and redis.call('HSETNX', KEYS[1], ARGV[6], tostring(NOW)) == 0 then
  return refuse('already', {state = state})
end
audit(ARGV[4], state, state, ARGV[5])
return answer({state = state})
