-- Records the digest of a custom correction text as built right after the recall committed (the
-- recall never waits for a build). Only while the text waits for its first approval and has no
-- digest yet: an approval always names a digest, and nobody can approve before it is recorded.
-- KEYS: the common ones (prologue.lua).
-- ARGV[1..3] as in prologue.lua, ARGV[4] the digest (64 hex digits).
local state = field(KEYS[1], 'state')
if state == nil then return refuse('not_found') end
local raw = field(KEYS[1], 'correction')
if raw == nil then return refuse('not_pending', {state = state}) end
local c = cjson.decode(raw)
if c.status ~= 'pending' or c.digest ~= '' then return refuse('not_pending', {state = state}) end
c.digest = ARGV[4]
redis.call('HSET', KEYS[1], 'correction', cjson.encode(c))
audit('correctionDigest', state, state, cjson.encode({digest = ARGV[4]}))
return answer({state = state})
