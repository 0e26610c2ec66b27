/**
 * Audiences in Redis: a sorted set of normalized addresses (all scores 0, so ordered by
 * address and sliceable by index for batches), a details hash, and a catalogue entry.
 *
 * An upload streams into scratch keys and replaces the audience in one Lua script at the end,
 * so readers see either the old audience or the new one, never a half-written list, and a
 * refused upload leaves the old one untouched. Memory stays bounded: at most one chunk of
 * commands is held in JS, whatever the audience size.
 */
import { randomUUID } from "node:crypto";
import type { ChainableCommander, Redis } from "ioredis";
import { hasControlChars, normalizeAddress } from "../domain/addresses.js";
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
}

export const AUDIENCE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** Longest name/department kept; longer is refused rather than silently cut. */
const MAX_DETAIL_LENGTH = 200;
/** Scratch keys of a crashed upload vanish on their own after this long without a new chunk. */
const SCRATCH_TTL_SECONDS = 3600;

/**
 * KEYS: 1 scratch zset, 2 scratch details hash, 3 audience zset, 4 audience details hash, 5 catalogue hash.
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
redis.call('HSET', KEYS[5], ARGV[1], cjson.encode({name = ARGV[1], size = size, updatedAt = ARGV[2], by = ARGV[3]}))
return size
`;

export class AudienceStore {
  private readonly redis: Redis;
  private readonly clock: { now(): number };
  private readonly maxRecipients: number;
  private readonly chunkSize: number;

  constructor(opts: AudienceStoreOptions) {
    this.redis = opts.redis;
    this.clock = opts.clock;
    this.maxRecipients = opts.maxRecipients ?? 1_000_000;
    this.chunkSize = opts.chunkSize ?? 1000;
  }

  /**
   * Replaces audience `name` with `records` (streamed; duplicates collapse, the last non-empty
   * details of an address win). All or nothing: any refused row throws an AudienceError and
   * leaves the previous audience as it was. `name` may be a function, asked once the records are
   * read, for a body that gives the name after the recipients (JSON keys come in any order).
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
    let committed = false;
    try {
      let distinct = 0;
      let row = 0;
      // One chunk at a time: ZADD and HSET take many members each, so a chunk is one round trip.
      let members: Array<string | number> = [];
      let details: string[] = [];
      const flush = async () => {
        const batch = this.redis.pipeline().zadd(scratch, ...members);
        if (details.length > 0) batch.hset(scratchDetails, ...details);
        batch.expire(scratch, SCRATCH_TTL_SECONDS).expire(scratchDetails, SCRATCH_TTL_SECONDS);
        const [zaddAdded] = await execOrThrow(batch);
        distinct += Number(zaddAdded?.[1]); // ZADD answers how many members were new: duplicates collapse
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
        members.push(0, checked.address);
        if (checked.details) details.push(checked.address, checked.details);
        if (members.length >= 2 * this.chunkSize) await flush();
      }
      if (members.length > 0) await flush();
      if (distinct === 0) throw new AudienceError("empty_audience", "The upload holds no recipient.");
      const name = typeof audienceName === "string" ? audienceName : audienceName();
      assertAudienceName(name);

      const updatedAt = new Date(this.clock.now()).toISOString();
      const audienceKeys = [scratch, scratchDetails, keys.audience(name), keys.audienceDetails(name), keys.audiences()];
      const size = Number(await this.redis.eval(COMMIT_SCRIPT, audienceKeys.length, ...audienceKeys, name, updatedAt, by));
      if (size < 0) throw new Error(`audience ${name}: upload ${uploadId} expired before it was committed`);
      committed = true;
      return { name, size, updatedAt, by };
    } finally {
      // On success RENAME already moved both keys; otherwise drop the partial upload.
      if (!committed) await this.redis.del(scratch, scratchDetails).catch(() => {});
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
