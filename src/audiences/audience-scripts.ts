/**
 * The Lua scripts of the audience store (audience-store.ts), each opening with its KEYS and ARGV.
 *
 * An audience's versions: every commit of an upload and every delete takes the next number, so a
 * number is never reused, even across a delete and a new upload under the same name. The newest
 * record heads the audience's versions list (keys.audienceVersions); an audience uploaded before
 * versions were kept counts as version 1. Each commit and delete also appends its entry to the
 * global audit chain in the same script, by the rule of store/lua/prologue.lua `audit()` (checked by
 * audit/verify.ts): `message` and `revision` empty, the audience named in `detail` (so the hash
 * covers it), `from`/`to` the version before and after.
 */
import { GLOBAL_AUDIT_LUA } from "../audit/audit-log.js";

/** Lua shared by the commit and the delete: the version counter, ownership and the audit entry. */
const SHARED = `
-- The newest version number of an audience (0: none yet; 1: uploaded before versions were kept).
local function lastVersion(kVersions, kCatalogue, name)
  local head = redis.call('LINDEX', kVersions, 0)
  if head then return tonumber(cjson.decode(head).version) end
  if redis.call('HEXISTS', kCatalogue, name) == 1 then return 1 end
  return 0
end

-- The owner of a catalogue entry: its creator; for an entry written before owners were kept, its uploader.
local function ownerOf(entry)
  return entry.owner or entry.by
end

local function mayChange(owner, actor, anyOwner)
  return anyOwner == '1' or string.lower(owner) == string.lower(actor)
end

${GLOBAL_AUDIT_LUA}
`;

/**
 * KEYS: 1 scratch zset, 2 scratch domains hash.
 * ARGV: 1 most distinct domains kept, 2 the field counting the others (OTHER_DOMAINS), 3 TTL of
 * both keys in seconds, 4.. normalized addresses.
 * Adds the addresses (score 0) and counts each new one under its domain, so a duplicate, in this
 * chunk or an earlier one, counts once. Returns how many addresses were new.
 */
export const CHUNK_SCRIPT = `
local cap, other = tonumber(ARGV[1]), ARGV[2]
local added, byDomain, names, seen = 0, {}, {}, {}
-- In slices: unpack() is bounded by Lua's stack, and one ZMSCORE plus one ZADD per slice costs far
-- less than a ZADD per address.
for first = 4, #ARGV, 500 do
  local slice, zadd = {}, {}
  for i = first, math.min(first + 499, #ARGV) do slice[#slice + 1] = ARGV[i] end
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(slice))
  for i, address in ipairs(slice) do
    if not scores[i] and not seen[address] then
      seen[address] = true
      added = added + 1
      zadd[#zadd + 1] = 0
      zadd[#zadd + 1] = address
      local domain = string.match(address, '@([^@]*)$') or ''
      if byDomain[domain] == nil then
        byDomain[domain] = 0
        names[#names + 1] = domain
      end
      byDomain[domain] = byDomain[domain] + 1
    end
  end
  if #zadd > 0 then redis.call('ZADD', KEYS[1], unpack(zadd)) end
end
-- Sorted, so which domains are kept once the cap is reached does not depend on Lua's table order.
table.sort(names)
local kept = redis.call('HLEN', KEYS[2]) - redis.call('HEXISTS', KEYS[2], other)
for _, domain in ipairs(names) do
  local field = domain
  if redis.call('HEXISTS', KEYS[2], domain) == 0 then
    if kept >= cap then field = other else kept = kept + 1 end
  end
  redis.call('HINCRBY', KEYS[2], field, byDomain[domain])
end
redis.call('EXPIRE', KEYS[1], ARGV[3])
if #names > 0 then redis.call('EXPIRE', KEYS[2], ARGV[3]) end
return added
`;

/**
 * KEYS: 1 audience zset, 2 catalogue hash, 3 versions list.
 * ARGV: 1 audience name, 2 the uploader, 3 "1" when the uploader may replace any audience (admin).
 * Before the diff of an upload: answers JSON {version, size, owner?} of the current audience, or
 * {err = "not_owner", owner} when the uploader may not replace it (checked again at commit).
 */
export const CURRENT_SCRIPT = `${SHARED}
local entry = redis.call('HGET', KEYS[2], ARGV[1])
local owner = nil
if entry then
  owner = ownerOf(cjson.decode(entry))
  if not mayChange(owner, ARGV[2], ARGV[3]) then return cjson.encode({err = 'not_owner', owner = owner}) end
end
return cjson.encode({version = lastVersion(KEYS[3], KEYS[2], ARGV[1]), size = redis.call('ZCARD', KEYS[1]), owner = owner})
`;

/**
 * KEYS: 1 scratch zset (the upload, complete), 2 audience zset (the current version).
 * ARGV: 1 first index, 2 how many.
 * Answers how many of the upload's members in that index range the current version holds: one
 * slice of |new ∩ old|, so counting a million costs Redis ~1 ms at a time, not one long command.
 */
export const COMMON_SLICE_SCRIPT = `
local first = tonumber(ARGV[1])
local members = redis.call('ZRANGE', KEYS[1], first, first + tonumber(ARGV[2]) - 1)
if #members == 0 then return 0 end
local common = 0
for _, score in ipairs(redis.call('ZMSCORE', KEYS[2], unpack(members))) do
  if score then common = common + 1 end
end
return common
`;

/** Members per COMMON_SLICE_SCRIPT call (bounded by Lua's unpack() stack too). */
export const COMMON_SLICE = 1000;

/**
 * KEYS: 1 scratch zset, 2 scratch details hash, 3 audience zset, 4 audience details hash, 5 catalogue hash,
 * 6 scratch domains hash, 7 audience domains hash, 8 versions list, 9 global audit stream, 10 audit head.
 * ARGV: 1 audience name, 2 updatedAt (ISO), 3 uploader, 4 now (epoch ms, the audit entry's `at`),
 * 5 "1" when the uploader may replace any audience (admin), 6 the version `common` was counted
 * against, 7 common: members of the upload the current version holds (COMMON_SLICE_SCRIPT),
 * 8 JSON object of fields recorded with the version, in the catalogue entry and in the audit detail
 * (a directory resolution: {directory = {...}}), or "", 9 the audit action instead of
 * audienceCreate/audienceReplace (audienceResolve), or "", 10 the directory group the catalogue
 * entry must still name (a resolution of an audience whose definition may have been replaced
 * meanwhile), or "", 11 "1" when an empty upload is committed (a confirmed empty resolution).
 * ARGV 8-11 may be left out (as "").
 * Answers JSON {size, version, owner, added, removed}; {err = "expired"} when the scratch set is gone,
 * {err = "not_owner", owner} when someone else owns the audience, {err = "redefined"} when the
 * entry no longer names the group of ARGV[10]: in each case nothing changed.
 * If another commit or a delete came between the count and this script, the version differs and
 * the count is redone here (ZINTERCARD: one command, but only in that race).
 * PERSIST because RENAME carries the scratch TTL over to the destination.
 */
export const COMMIT_SCRIPT = `${SHARED}
local name, by = ARGV[1], ARGV[3]
local size = redis.call('ZCARD', KEYS[1])
if size == 0 and (ARGV[11] or '') ~= '1' then return cjson.encode({err = 'expired'}) end
local owner = by
local entry = redis.call('HGET', KEYS[5], name)
if entry then
  owner = ownerOf(cjson.decode(entry))
  if not mayChange(owner, by, ARGV[5]) then return cjson.encode({err = 'not_owner', owner = owner}) end
end
if (ARGV[10] or '') ~= '' then
  local d = entry and cjson.decode(entry).directory
  if type(d) ~= 'table' or d.group ~= ARGV[10] then return cjson.encode({err = 'redefined'}) end
end
local extra = {}
if (ARGV[8] or '') ~= '' then extra = cjson.decode(ARGV[8]) end
local function withExtra(t)
  for k, v in pairs(extra) do t[k] = v end
  return t
end
local last = lastVersion(KEYS[8], KEYS[5], name)
local oldSize = redis.call('ZCARD', KEYS[3])
local common = tonumber(ARGV[7])
if tostring(last) ~= ARGV[6] then
  common = 0
  if oldSize > 0 then common = redis.call('ZINTERCARD', 2, KEYS[1], KEYS[3]) end
end
local version, added, removed = last + 1, size - common, oldSize - common
if type(extra.directory) == 'table' then
  extra.directory.added = added
  extra.directory.removed = removed
end

-- The upload's scratch key becomes the audience's (its TTL dropped); none: the audience has none either.
local function replaceWith(scratch, key)
  if redis.call('EXISTS', scratch) == 1 then
    redis.call('RENAME', scratch, key)
    redis.call('PERSIST', key)
  else
    redis.call('DEL', key)
  end
end
replaceWith(KEYS[1], KEYS[3])
replaceWith(KEYS[2], KEYS[4])
replaceWith(KEYS[6], KEYS[7])
redis.call('HSET', KEYS[5], name, cjson.encode(withExtra({name = name, size = size, updatedAt = ARGV[2], by = by, owner = owner, version = version})))
redis.call('LPUSH', KEYS[8], cjson.encode(withExtra({version = version, by = by, at = ARGV[2], size = size, added = added, removed = removed})))
local action = 'audienceCreate'
if entry then action = 'audienceReplace' end
if (ARGV[9] or '') ~= '' then action = ARGV[9] end
auditGlobal(KEYS[9], KEYS[10], by, action, tostring(last), tostring(version), ARGV[4],
  cjson.encode(withExtra({audience = name, owner = owner, size = size, added = added, removed = removed})))
return cjson.encode({size = size, version = version, owner = owner, added = added, removed = removed})
`;

/**
 * KEYS: 1 audience zset, 2 audience details hash, 3 audience domains hash, 4 catalogue hash,
 * 5 versions list, 6 global audit stream, 7 audit head.
 * ARGV: 1 audience name, 2 who deletes, 3 now (ISO), 4 now (epoch ms), 5 "1" when they may delete
 * any audience (admin).
 * Deletes the audience and records the deletion as its next version (size 0, `deleted`), so the
 * number is not reused by a later upload under the same name; the versions list stays.
 * Answers JSON {version, removed}, {err = "not_found"} or {err = "not_owner", owner}.
 * UNLINK: a million members are freed in the background, not while Redis serves nobody.
 */
export const DELETE_SCRIPT = `${SHARED}
local name, by = ARGV[1], ARGV[2]
local entry = redis.call('HGET', KEYS[4], name)
if not entry then return cjson.encode({err = 'not_found'}) end
local owner = ownerOf(cjson.decode(entry))
if not mayChange(owner, by, ARGV[5]) then return cjson.encode({err = 'not_owner', owner = owner}) end
local last = lastVersion(KEYS[5], KEYS[4], name)
local removed = redis.call('ZCARD', KEYS[1])
local version = last + 1
redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3])
redis.call('HDEL', KEYS[4], name)
redis.call('LPUSH', KEYS[5], cjson.encode({version = version, by = by, at = ARGV[3], size = 0, added = 0, removed = removed, deleted = true}))
auditGlobal(KEYS[6], KEYS[7], by, 'audienceDelete', tostring(last), tostring(version), ARGV[4],
  cjson.encode({audience = name, owner = owner, size = 0, added = 0, removed = removed}))
return cjson.encode({version = version, removed = removed})
`;
