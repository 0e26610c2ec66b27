-- One slice of a freeze (store/recipient-freeze.ts): copies `count` members of an audience list,
-- from `offset`, into the freeze's scratch set, if the list is still the version the freeze began
-- with. A slice is a few milliseconds of Redis time, so a recall is never queued behind a freeze of
-- a million recipients (one COPY or ZUNIONSTORE of them blocked Redis for 0.8-2.3 s).
-- Not a message script: no lifecycle prologue, no audit (the submit that follows is the change).
-- KEYS[1] audience catalogue hash, KEYS[2] the list's sorted set, KEYS[3] the scratch sorted set.
-- ARGV[1] list name, ARGV[2] its version when the freeze began, ARGV[3] offset, ARGV[4] count,
-- ARGV[5] the scratch set's expiry in ms (a freeze its process abandoned leaves nothing for long).
-- Answers {copied = n} or {changed = true} (the list was replaced or deleted meanwhile: start again).
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry or redis.call('EXISTS', KEYS[2]) == 0 then return cjson.encode({changed = true}) end
local version = cjson.decode(entry).version or 1
if tostring(version) ~= ARGV[2] then return cjson.encode({changed = true}) end
local first = tonumber(ARGV[3])
local members = redis.call('ZRANGE', KEYS[2], first, first + tonumber(ARGV[4]) - 1)
-- ZADD in chunks of 1,000: unpack() of many thousand arguments overflows Lua's C stack.
for start = 1, #members, 1000 do
  local args = {}
  for i = start, math.min(#members, start + 999) do
    args[#args + 1] = 0
    args[#args + 1] = members[i]
  end
  redis.call('ZADD', KEYS[3], unpack(args))
end
redis.call('PEXPIRE', KEYS[3], ARGV[5])
return cjson.encode({copied = #members})
