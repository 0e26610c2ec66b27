-- Shared by every message script (prepended by store/scripts.ts).
-- Conventions: KEYS[1] message hash, KEYS[2] message audit stream, KEYS[3] global audit stream,
-- KEYS[4] global audit head (string). ARGV[1] key prefix, ARGV[2] now (epoch ms), ARGV[3] actor.
-- Every script answers a JSON string: {"ok":true,...} or {"err":"<code>", "state": ...}.
local PREFIX = ARGV[1]
local NOW = tonumber(ARGV[2])
local ACTOR = ARGV[3]

local function field(k, f)
  local v = redis.call('HGET', k, f)
  if v == false then return nil end
  return v
end

local function num(k, f)
  return tonumber(field(k, f) or '0')
end

local function answer(t) return cjson.encode(t) end

-- allowed is a comma list of states the action may start from (computed from domain/lifecycle.ts).
local function stateAllowed(state, allowed)
  for s in string.gmatch(allowed, '[^,]+') do
    if s == state then return true end
  end
  return false
end

-- Appends one audit entry to the message's stream and the global one. Each entry carries the
-- hash of the previous entry of the global chain, so an edit or a gap is detectable.
local function audit(action, from, to, detail)
  local id = field(KEYS[1], 'id')
  local revision = field(KEYS[1], 'revision') or '0'
  local prev = redis.call('GET', KEYS[4])
  if prev == false then prev = '' end
  local body = table.concat({id, revision, ACTOR, action, from, to, tostring(NOW), detail}, '\n')
  local hash = redis.sha1hex(prev .. '\n' .. body)
  local fields = {'message', id, 'revision', revision, 'actor', ACTOR, 'action', action, 'from', from,
    'to', to, 'at', tostring(NOW), 'detail', detail, 'prev', prev, 'hash', hash}
  redis.call('XADD', KEYS[2], '*', unpack(fields))
  redis.call('XADD', KEYS[3], '*', unpack(fields))
  redis.call('SET', KEYS[4], hash)
end

local function publish(kind)
  redis.call('PUBLISH', PREFIX .. ':events', cjson.encode({
    kind = kind, id = field(KEYS[1], 'id'), state = field(KEYS[1], 'state'), revision = num(KEYS[1], 'revision'),
    at = NOW }))
end

local function setState(from, to)
  local id = field(KEYS[1], 'id')
  local createdAt = field(KEYS[1], 'createdAt')
  redis.call('HSET', KEYS[1], 'state', to, 'updatedAt', tostring(NOW))
  -- A pause (pause.lua) belongs to the fan-out of one state: a recall or the end of it lifts it.
  if to ~= from then redis.call('HDEL', KEYS[1], 'paused') end
  redis.call('ZREM', PREFIX .. ':state:' .. from, id)
  redis.call('ZADD', PREFIX .. ':state:' .. to, createdAt, id)
end

local function transition(action, from, to, detail)
  setState(from, to)
  audit(action, from, to, detail)
  publish('state')
end
