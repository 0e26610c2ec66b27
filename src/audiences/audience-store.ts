/**
 * Audiences in Redis: a sorted set of normalized addresses (all scores 0, so ordered by
 * address and sliceable by index for batches), a details hash, and a catalogue entry.
 *
 * An upload streams into scratch keys and replaces the audience in one Lua script at the end,
 * so readers see either the old audience or the new one, never a half-written list, and a
 * refused upload leaves the old one untouched. Memory stays bounded: at most one chunk of
 * commands is held in JS, whatever the audience size.
 *
 * With ALLOWED_RECIPIENT_DOMAINS set, an upload holding any address outside those domains is
 * refused whole, naming the first few (domain/recipient-domains.ts). Each audience also keeps its
 * recipients counted by domain (keys.audienceDomains), written with the list and replaced with it.
 */
import { randomUUID } from "node:crypto";
import type { ChainableCommander, Redis } from "ioredis";
import { hasControlChars, normalizeAddress } from "../domain/addresses.js";
import { isAllowedDomain, nameSome, OTHER_DOMAINS, OUTSIDE_LISTED, type AllowedDomains } from "../domain/recipient-domains.js";
import { keys } from "../store/keys.js";
import type { AudienceRecord } from "./csv.js";
import { AudienceError } from "./errors.js";

export interface AudienceInfo {
  name: string;
  size: number;
  /** ISO 8601, from the injected clock at commit time. */
  updatedAt: string;
  /** Who uploaded it. */
  by: string;
}

export interface AudienceStoreOptions {
  redis: Redis;
  clock: { now(): number };
  /** Distinct recipients allowed in one audience. Default 1,000,000 (the spec's normal maximum). */
  maxRecipients?: number;
  /** Rows sent to Redis per pipeline round trip. Default 1000: bounded memory, few round trips. */
  chunkSize?: number;
  /** ALLOWED_RECIPIENT_DOMAINS: an upload with an address in any other domain is refused. Default unset: any domain. */
  allowedDomains?: AllowedDomains;
}

/** Recipients of an audience in one domain (OTHER_DOMAINS: those beyond the domains recorded). */
export interface DomainCount {
  domain: string;
  count: number;
}

export const AUDIENCE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Longest name/department kept; longer is refused rather than silently cut. */
const MAX_DETAIL_LENGTH = 200;
/** Scratch keys of a crashed upload vanish on their own after this long without a new chunk. */
const SCRATCH_TTL_SECONDS = 3600;
/**
 * Distinct domains counted per audience; recipients in further domains are counted under
 * OTHER_DOMAINS. Raised to the length of the allowed list when that is longer, so an audience
 * uploaded under the setting always has every domain recorded (and passes the check at submit).
 */
const MAX_RECORDED_DOMAINS = 200;

/**
 * KEYS: 1 scratch zset, 2 scratch domains hash.
 * ARGV: 1 most distinct domains kept, 2 the field counting the others (OTHER_DOMAINS), 3 TTL of
 * both keys in seconds, 4.. normalized addresses.
 * Adds the addresses (score 0) and counts each new one under its domain, so a duplicate, in this
 * chunk or an earlier one, counts once. Returns how many addresses were new.
 */
const CHUNK_SCRIPT = `
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
 * KEYS: 1 scratch zset, 2 scratch details hash, 3 audience zset, 4 audience details hash, 5 catalogue hash,
 * 6 scratch domains hash, 7 audience domains hash.
 * ARGV: 1 audience name, 2 updatedAt (ISO), 3 uploader.
 * Returns the new size, or -1 when the scratch set is gone (expired), in which case nothing changed.
 * PERSIST because RENAME carries the scratch TTL over to the destination.
 */
const COMMIT_SCRIPT = `
local size = redis.call('ZCARD', KEYS[1])
if size == 0 then return -1 end
redis.call('RENAME', KEYS[1], KEYS[3])
redis.call('PERSIST', KEYS[3])
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('RENAME', KEYS[2], KEYS[4])
  redis.call('PERSIST', KEYS[4])
else
  redis.call('DEL', KEYS[4])
end
if redis.call('EXISTS', KEYS[6]) == 1 then
  redis.call('RENAME', KEYS[6], KEYS[7])
  redis.call('PERSIST', KEYS[7])
else
  redis.call('DEL', KEYS[7])
end
redis.call('HSET', KEYS[5], ARGV[1], cjson.encode({name = ARGV[1], size = size, updatedAt = ARGV[2], by = ARGV[3]}))
return size
`;

export class AudienceStore {
  private readonly redis: Redis;
  private readonly clock: { now(): number };
  private readonly maxRecipients: number;
  private readonly chunkSize: number;
  private readonly allowedDomains: AllowedDomains;
  private readonly domainCap: number;

  constructor(opts: AudienceStoreOptions) {
    this.redis = opts.redis;
    this.clock = opts.clock;
    this.maxRecipients = opts.maxRecipients ?? 1_000_000;
    this.chunkSize = opts.chunkSize ?? 1000;
    this.allowedDomains = opts.allowedDomains;
    this.domainCap = Math.max(MAX_RECORDED_DOMAINS, opts.allowedDomains?.length ?? 0);
  }

  /**
   * Replaces audience `name` with `records` (streamed; duplicates collapse, the last non-empty
   * details of an address win). All or nothing: any refused row throws an AudienceError and
   * leaves the previous audience as it was. `name` may be a function, asked once the records are
   * read, for a body that gives the name after the recipients (JSON keys come in any order).
   * Addresses outside the allowed domains are counted to the end of the upload (the first
   * OUTSIDE_LISTED named with their rows) and refuse it as a whole.
   */
  async replaceFromRecords(
    audienceName: string | (() => string),
    by: string,
    records: AsyncIterable<AudienceRecord> | Iterable<AudienceRecord>,
  ): Promise<AudienceInfo> {
    if (typeof audienceName === "string") assertAudienceName(audienceName);
    const uploadId = randomUUID();
    const scratch = keys.audienceUpload(uploadId);
    const scratchDetails = keys.audienceUploadDetails(uploadId);
    const scratchDomains = keys.audienceUploadDomains(uploadId);
    let committed = false;
    try {
      let distinct = 0;
      let row = 0;
      const outside = { count: 0, first: [] as Array<{ row: number; email: string }> };
      // One chunk at a time: one script adds the addresses and counts their domains, HSET takes many
      // members, so a chunk is one round trip.
      let members: string[] = [];
      let details: string[] = [];
      const flush = async () => {
        const batch = this.redis
          .pipeline()
          .eval(CHUNK_SCRIPT, 2, scratch, scratchDomains, this.domainCap, OTHER_DOMAINS, SCRATCH_TTL_SECONDS, ...members);
        if (details.length > 0) batch.hset(scratchDetails, ...details);
        batch.expire(scratchDetails, SCRATCH_TTL_SECONDS);
        const [chunkAdded] = await execOrThrow(batch);
        distinct += Number(chunkAdded?.[1]); // the script answers how many addresses were new: duplicates collapse
        members = [];
        details = [];
        if (distinct > this.maxRecipients) {
          throw new AudienceError("too_many_recipients", `An audience holds at most ${this.maxRecipients} recipients.`, {
            max: this.maxRecipients,
          });
        }
      };

      for await (const rec of records) {
        row += 1;
        const checked = checkRecord(rec, row);
        if (!isAllowedDomain(checked.address, this.allowedDomains)) {
          outside.count += 1;
          if (outside.first.length < OUTSIDE_LISTED) outside.first.push({ row, email: checked.address });
        }
        // Refused already: read on only to count, and write nothing more.
        if (outside.count > 0) continue;
        members.push(checked.address);
        if (checked.details) details.push(checked.address, checked.details);
        if (members.length >= this.chunkSize) await flush();
      }
      if (outside.count > 0) throw outsideError(outside, this.allowedDomains ?? []);
      if (members.length > 0) await flush();
      if (distinct === 0) throw new AudienceError("empty_audience", "The upload holds no recipient.");
      const name = typeof audienceName === "string" ? audienceName : audienceName();
      assertAudienceName(name);

      const updatedAt = new Date(this.clock.now()).toISOString();
      const audienceKeys = [scratch, scratchDetails, keys.audience(name), keys.audienceDetails(name), keys.audiences(), scratchDomains, keys.audienceDomains(name)];
      const size = Number(await this.redis.eval(COMMIT_SCRIPT, audienceKeys.length, ...audienceKeys, name, updatedAt, by));
      if (size < 0) throw new Error(`audience ${name}: upload ${uploadId} expired before it was committed`);
      committed = true;
      return { name, size, updatedAt, by };
    } finally {
      // On success RENAME already moved the scratch keys; otherwise drop the partial upload.
      if (!committed) await this.redis.del(scratch, scratchDetails, scratchDomains).catch(() => {});
    }
  }

  /** Every audience in the catalogue, sorted by name. */
  async list(): Promise<AudienceInfo[]> {
    const all = await this.redis.hgetall(keys.audiences());
    return Object.values(all)
      .map((json) => JSON.parse(json) as AudienceInfo)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The catalogue entry of `name`, or null when there is no such audience (or the name is not valid). */
  async get(name: string): Promise<AudienceInfo | null> {
    if (!AUDIENCE_NAME.test(name)) return null;
    const json = await this.redis.hget(keys.audiences(), name);
    return json === null ? null : (JSON.parse(json) as AudienceInfo);
  }

  /** Recipients by domain of the current version of `name`, most first ([] when there is no such audience). */
  async domains(name: string): Promise<DomainCount[]> {
    if (!AUDIENCE_NAME.test(name)) return [];
    return byCount(await this.redis.hgetall(keys.audienceDomains(name)));
  }

  /**
   * Recipients by domain of each named audience that exists, for the check at submit: `domains` is
   * null when the audience has none recorded (uploaded before Airlock recorded them). Audiences that
   * do not exist are left out: the submit itself refuses them.
   */
  async recordedDomains(names: readonly string[]): Promise<Array<{ name: string; domains: DomainCount[] | null }>> {
    const valid = names.filter((n) => AUDIENCE_NAME.test(n));
    if (valid.length === 0) return [];
    const batch = this.redis.pipeline();
    for (const n of valid) batch.exists(keys.audience(n)).hgetall(keys.audienceDomains(n));
    const results = await execOrThrow(batch);
    const out: Array<{ name: string; domains: DomainCount[] | null }> = [];
    valid.forEach((name, i) => {
      if (Number(results[2 * i]?.[1]) === 0) return;
      const counts = results[2 * i + 1]?.[1] as Record<string, string>;
      out.push({ name, domains: Object.keys(counts).length === 0 ? null : byCount(counts) });
    });
    return out;
  }
}

function byCount(hash: Record<string, string>): DomainCount[] {
  return Object.entries(hash)
    .map(([domain, count]) => ({ domain, count: Number(count) }))
    .sort((a, b) => b.count - a.count || (a.domain < b.domain ? -1 : a.domain > b.domain ? 1 : 0));
}

function outsideError(outside: { count: number; first: Array<{ row: number; email: string }> }, allowed: readonly string[]): AudienceError {
  const rows = outside.count === 1 ? "1 row has an address" : `${outside.count} rows have addresses`;
  const named = nameSome(outside.first.map((o) => `${o.email} (row ${o.row})`), outside.count);
  return new AudienceError("invalid_recipient", `${rows} outside the allowed recipient domains (${nameSome(allowed, allowed.length)}): ${named}. Nothing was changed.`, {
    reason: "outside the allowed recipient domains",
    allowedDomains: allowed,
    count: outside.count,
    first: outside.first,
  });
}

export function assertAudienceName(name: string): void {
  if (typeof name !== "string" || !AUDIENCE_NAME.test(name)) {
    throw new AudienceError("invalid_name", `Invalid audience name: use 1-63 lower-case letters, digits and hyphens, starting with a letter or digit.`, {
      name: typeof name === "string" ? name.slice(0, 80) : undefined,
    });
  }
}

/** Validates one row; returns the normalized address and the details JSON (null when none). */
function checkRecord(rec: AudienceRecord, row: number): { address: string; details: string | null } {
  const email: unknown = (rec as Partial<AudienceRecord> | null)?.email;
  if (typeof email !== "string") throw invalidRow(row, "has no email", undefined);
  const n = normalizeAddress(email);
  if (!n.ok) throw invalidRow(row, `address ${n.reason}`, email);
  const out: { name?: string; department?: string } = {};
  for (const field of ["name", "department"] as const) {
    const value: unknown = rec[field];
    if (value === undefined || value === null) continue;
    if (typeof value !== "string") throw invalidRow(row, `${field} is not text`, email);
    const trimmed = value.trim();
    if (hasControlChars(trimmed)) throw invalidRow(row, `${field} contains control characters`, email);
    if (trimmed.length > MAX_DETAIL_LENGTH) throw invalidRow(row, `${field} is longer than ${MAX_DETAIL_LENGTH} characters`, email);
    if (trimmed) out[field] = trimmed;
  }
  return { address: n.address, details: out.name || out.department ? JSON.stringify(out) : null };
}

function invalidRow(row: number, reason: string, value: string | undefined): AudienceError {
  // JSON.stringify shows control characters visibly instead of letting them reach a log line as is.
  const shown = value === undefined ? "" : ` (${JSON.stringify(value.slice(0, 100))})`;
  return new AudienceError("invalid_recipient", `Row ${row}: ${reason}${shown}.`, {
    row,
    reason,
    ...(value === undefined ? {} : { value: value.slice(0, 100) }),
  });
}

async function execOrThrow(batch: ChainableCommander): Promise<Array<[Error | null, unknown]>> {
  const results = await batch.exec();
  if (!results) throw new Error("redis pipeline was discarded");
  for (const [err] of results) if (err) throw err;
  return results;
}
