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
 *
 * An audience has an owner, its creator: only the owner, or an admin (`anyOwner`), replaces or
 * deletes it, checked before the upload is read when its name is known and again in the commit.
 * Every commit and delete is a new version, recorded with who, when, the size and how many
 * addresses were added and removed (keys.audienceVersions), and appended to the global audit chain
 * in the same script (audience-scripts.ts). Added and removed come from |new ∩ old|, counted in
 * Redis a slice at a time before the commit: nothing of either version is held here.
 *
 * An upload is bounded in time as well as in size: besides the distinct recipients (maxRecipients),
 * it may hold at most maxRows rows received, duplicates and a CSV's empty lines included, so an
 * endless list of the same few addresses is refused instead of read for ever; and a user runs at
 * most maxConcurrentUploads uploads at a time, counted in Redis across API processes
 * (upload-slots.ts, taken by the route before the body is read).
 */
import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import type { ChainableCommander, Redis } from "ioredis";
import { hasControlChars, normalizeAddress } from "../domain/addresses.js";
import { AUDIENCE_NAME } from "../domain/audience-name.js";
import { DomainError } from "../domain/errors.js";
import { isAllowedDomain, nameSome, OTHER_DOMAINS, OUTSIDE_LISTED, type AllowedDomains } from "../domain/recipient-domains.js";
import { keys } from "../store/keys.js";
import { CHUNK_SCRIPT, COMMIT_SCRIPT, COMMON_SLICE, COMMON_SLICE_SCRIPT, CURRENT_SCRIPT, DELETE_SCRIPT } from "./audience-scripts.js";
import type { AudienceRecord } from "./csv.js";
import { AudienceError } from "./errors.js";
import { UNPACED, type BulkPace, type PacedStream } from "../store/bulk-pace.js";
import { UploadSlots, type UploadSlot } from "./upload-slots.js";

export interface AudienceInfo {
  name: string;
  /** A directory audience: its group and last resolution. Absent for an uploaded list. */
  directory?: DirectoryRecord;
  size: number;
  /** ISO 8601, from the injected clock at commit time. */
  updatedAt: string;
  /** Who uploaded the current version. */
  by: string;
  /** Who created it: only they and admins replace or delete it (for an audience uploaded before owners were kept: its last uploader). */
  owner: string;
  /** The current version's number (1 for an audience uploaded before versions were kept). */
  version: number;
}

/** One version of an audience, as recorded when it was committed (or deleted). */
export interface AudienceVersion {
  version: number;
  /** Who uploaded (or deleted) it. */
  by: string;
  /** ISO 8601. */
  at: string;
  size: number;
  /** Addresses in this version that the version before did not hold. */
  added: number;
  /** Addresses of the version before that this one does not hold. */
  removed: number;
  /** The audience was deleted (size 0); a later upload under the name is a new audience with a new owner. */
  deleted?: true;
  /** This version is a resolution of a directory group. */
  directory?: DirectoryRecord;
}

/** An audience with its newest versions, newest first. */
export interface AudienceDetail extends AudienceInfo {
  versions: AudienceVersion[];
}

/** What an upload committed: the audience and its new version's changes. */
export type AudienceUpload = AudienceInfo & Pick<AudienceVersion, "added" | "removed">;

/** Who changes an audience, beyond its owner. */
export interface ChangeOptions {
  /** The caller may replace or delete any audience (an admin). Default false: only the owner. */
  anyOwner?: boolean;
}

/** What a complete upload would commit, asked of `ReplaceOptions.check` before anything changes. */
export interface StagedChange {
  size: number;
  added: number;
  removed: number;
  /** The audience as it is now (null: a new one). */
  previous: AudienceInfo | null;
}

/** A directory audience's definition and last resolution, kept with each version and in the catalogue (see service/directory-audiences.ts). */
export interface DirectoryRecord {
  /** The group's DN as its owner gave it. */
  group: string;
  /** When the resolution started (ISO 8601). */
  resolvedAt: string;
  /** No earlier resolution of this group is the audience's version before: a new baseline, no change limit applied. */
  first: boolean;
  /** Addresses this resolution added and removed against the version before (written by the commit itself). */
  added?: number;
  removed?: number;
  /** Distinct people in the group and its nested groups, enabled or not. */
  members: number;
  /** Members the enabled filter excludes. */
  disabled: number;
  /** Enabled members without an address: how many, the first 20 DNs. */
  withoutMail: { count: number; first: string[] };
  /** Enabled members whose address is refused: how many, the first 20 as "DN: reason". */
  invalidMail: { count: number; first: string[] };
  nestedGroups: number;
  cycles: number;
  /** The admin who accepted a resolution the change limit refused (0 recipients, or a change over DIRECTORY_MAX_CHANGE_PERCENT). */
  confirmedBy?: string;
}

export interface ReplaceOptions extends ChangeOptions {
  /** Asked with the change the upload would make, once it is read and before the commit: throws to refuse it (nothing changes). */
  check?: (change: StagedChange) => void | Promise<void>;
  /** A directory resolution: recorded with the version, in the catalogue entry and in the audit entry (a function: asked once the records are read). */
  directory?: DirectoryRecord | (() => DirectoryRecord);
  /** Audited as `audienceResolve` (a resolution of an unchanged definition) rather than a create or replace. */
  resolution?: boolean;
  /** Commit only while the catalogue entry still defines the audience as this directory group (else a `conflict` DomainError). */
  whileGroup?: string;
  /** An upload of no recipient is committed (an empty audience, its sorted set removed) instead of refused: a confirmed empty resolution. */
  allowEmpty?: boolean;
}

export interface AudienceStoreOptions {
  redis: Redis;
  clock: { now(): number };
  /** Distinct recipients allowed in one audience. Default 1,000,000 (the spec's normal maximum). */
  maxRecipients?: number;
  /**
   * Rows one upload may send, every row counted (duplicates, refused rows read on to be counted, a
   * CSV's empty lines): the bound in time of an upload whose rows collapse into few recipients.
   * Default twice maxRecipients, so a full list with some duplicates still fits (and at least
   * MIN_DEFAULT_ROWS, so a small cap still takes a small list with many duplicates).
   */
  maxRows?: number;
  /** Uploads one user may run at a time, across every API process. Default 2 (UPLOADS_PER_USER). */
  maxConcurrentUploads?: number;
  /** How long a running upload's place lasts unless renewed (it is renewed every third of it). Default 60 s (UPLOAD_LEASE_MS). */
  uploadLeaseMs?: number;
  /**
   * Rows sent to Redis per pipeline round trip. Default 500 (UPLOAD_CHUNK): each row adds to two large keys (the
   * upload's set and its details), whose growth touches memory Redis has not touched yet; chunks
   * of 1,000 took up to 22-70 ms of Redis under load on the benchmark's micro-VM (issue 18 allows
   * 20 ms per command), and a million's 2,000 round trips cost ~1 s more than 1,000.
   */
  chunkSize?: number;
  /** ALLOWED_RECIPIENT_DOMAINS: an upload with an address in any other domain is refused. Default unset: any domain. */
  allowedDomains?: AllowedDomains;
  /** An upload's chunks give way to running sends (store/bulk-pace.ts). Default: never. */
  pace?: BulkPace;
  /** At most this much of one upload is spent giving way (ms). Default UPLOAD_PACING_MS. */
  maxPacingMs?: number;
}

/** Recipients of an audience in one domain (OTHER_DOMAINS: those beyond the domains recorded). */
export interface DomainCount {
  domain: string;
  count: number;
}

/** Longest name/department kept; longer is refused rather than silently cut. */
const MAX_DETAIL_LENGTH = 200;
/** Scratch keys of a crashed upload vanish on their own after this long without a new chunk. */
const SCRATCH_TTL_SECONDS = 3600;
/** Rows per chunk (one round trip) of an upload: see AudienceStoreOptions.chunkSize. */
const UPLOAD_CHUNK = 500;
/**
 * Distinct domains counted per audience; recipients in further domains are counted under
 * OTHER_DOMAINS. Raised to the length of the allowed list when that is longer, so an audience
 * uploaded under the setting always has every domain recorded (and passes the check at submit).
 */
const MAX_RECORDED_DOMAINS = 200;
/** Versions shown with an audience (all are kept, in keys.audienceVersions and the audit trail). */
const VERSIONS_SHOWN = 50;
/** The least default bound on rows, however low maxRecipients is: 10,000 rows cost a few ms of work. */
const MIN_DEFAULT_ROWS = 10_000;
/**
 * Uploads one user runs at a time (no setting yet: config.ts is not this module's to change). Two:
 * one list can be replaced while another is still uploading, and nobody runs a dozen at once.
 */
const UPLOADS_PER_USER = 2;
/**
 * How long a running upload's place is held without renewal. The holder renews it every 20 s, so
 * it survives two missed renewals (a Redis failover, a stalled event loop); a process that crashes
 * mid-upload stops renewing, and its user gets the place back within a minute.
 */
const UPLOAD_LEASE_MS = 60_000;

/**
 * At most this much of one upload is spent waiting for running sends (store/bulk-pace.ts): well
 * within the 300 s Node gives a request, whatever the client's speed. A million rows waited ~30 s
 * in the benchmark while a million's send ran.
 */
const UPLOAD_PACING_MS = 60_000;

export class AudienceStore {
  private readonly redis: Redis;
  private readonly clock: { now(): number };
  private readonly maxRecipients: number;
  private readonly maxRows: number;
  private readonly chunkSize: number;
  private readonly slots: UploadSlots;
  private readonly allowedDomains: AllowedDomains;
  private readonly domainCap: number;
  private readonly pace: BulkPace;
  private readonly maxPacingMs: number;

  constructor(opts: AudienceStoreOptions) {
    this.pace = opts.pace ?? UNPACED;
    this.maxPacingMs = opts.maxPacingMs ?? UPLOAD_PACING_MS;
    this.redis = opts.redis;
    this.clock = opts.clock;
    this.maxRecipients = opts.maxRecipients ?? 1_000_000;
    this.maxRows = opts.maxRows ?? Math.max(2 * this.maxRecipients, MIN_DEFAULT_ROWS);
    this.chunkSize = opts.chunkSize ?? UPLOAD_CHUNK;
    this.allowedDomains = opts.allowedDomains;
    this.domainCap = Math.max(MAX_RECORDED_DOMAINS, opts.allowedDomains?.length ?? 0);
    this.slots = new UploadSlots({ redis: opts.redis, max: opts.maxConcurrentUploads ?? UPLOADS_PER_USER, leaseMs: opts.uploadLeaseMs ?? UPLOAD_LEASE_MS });
  }

  /**
   * Takes one of `by`'s places for an upload (at most maxConcurrentUploads at a time, counted in
   * Redis across API processes), or throws a `rate_limited` DomainError naming the limit. Call it
   * before reading the body, and `release()` the place when the upload ends, however it ends.
   */
  startUpload(by: string): Promise<UploadSlot> {
    return this.slots.acquire(by);
  }

  /**
   * Replaces audience `name` with `records` (streamed; duplicates collapse, the last non-empty
   * details of an address win; null is a row without a recipient, a CSV's empty line, counted toward
   * maxRows and otherwise skipped). All or nothing: any refused row throws an AudienceError and
   * leaves the previous audience as it was; so does the row past maxRows, as soon as it arrives.
   * `name` may be a function, asked once the records are read, for a body that gives the name after
   * the recipients (JSON keys come in any order).
   * Addresses outside the allowed domains are counted to the end of the upload (the first
   * OUTSIDE_LISTED named with their rows) and refuse it as a whole.
   * An existing audience is replaced only by its owner or with `anyOwner`; anyone else gets a
   * `forbidden` DomainError naming the owner, before a row is read when `name` is a string.
   */
  async replaceFromRecords(
    audienceName: string | (() => string),
    by: string,
    records: AsyncIterable<AudienceRecord | null> | Iterable<AudienceRecord | null>,
    opts: ReplaceOptions = {},
  ): Promise<AudienceUpload> {
    const anyOwner = opts.anyOwner ? "1" : "0";
    if (typeof audienceName === "string") {
      assertAudienceName(audienceName);
      await this.current(audienceName, by, anyOwner);
    }
    const uploadId = randomUUID();
    const scratch = keys.audienceUpload(uploadId);
    const scratchDetails = keys.audienceUploadDetails(uploadId);
    const scratchDomains = keys.audienceUploadDomains(uploadId);
    let committed = false;
    try {
      let distinct = 0;
      let row = 0; // rows with a recipient, as numbered in refusals
      let received = 0; // every row, for maxRows
      const outside = { count: 0, first: [] as Array<{ row: number; email: string }> };
      // One chunk at a time: one script adds the addresses and counts their domains, HSET takes many
      // members, so a chunk is one round trip.
      let members: string[] = [];
      let details: string[] = [];
      // A chunk's work, for the pacing: this process's busy time since the last chunk (reading and
      // checking its rows, never the idle wait for a slow client's bytes; in a process that also
      // runs workers, theirs too) plus its Redis round trip. Bounded per upload (maxPacingMs).
      let busySince = performance.eventLoopUtilization();
      const pace = this.pace.budget(this.maxPacingMs);
      const flush = async (more: boolean) => {
        const busyMs = performance.eventLoopUtilization(busySince).active;
        const startedAt = pace.start();
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
        if (more) {
          await pace.afterWork(busyMs + (pace.start() - startedAt));
          busySince = performance.eventLoopUtilization();
        }
      };

      for await (const rec of records) {
        received += 1;
        if (received > this.maxRows) {
          throw new AudienceError("too_many_recipients", `An upload holds at most ${this.maxRows} rows, duplicates included. Nothing was changed.`, {
            maxRows: this.maxRows,
          });
        }
        if (rec === null) continue;
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
        if (members.length >= this.chunkSize) await flush(true);
      }
      if (outside.count > 0) throw outsideError(outside, this.allowedDomains ?? []);
      if (members.length > 0) await flush(false);
      if (distinct === 0 && !opts.allowEmpty) throw new AudienceError("empty_audience", "The upload holds no recipient.");
      const name = typeof audienceName === "string" ? audienceName : audienceName();
      assertAudienceName(name);

      const before = await this.current(name, by, anyOwner);
      const common = before.size === 0 ? 0 : await this.countCommon(scratch, keys.audience(name), distinct, pace);
      if (opts.check) await opts.check({ size: distinct, added: distinct - common, removed: before.size - common, previous: await this.get(name) });

      const now = this.clock.now();
      const updatedAt = new Date(now).toISOString();
      const audienceKeys = [
        scratch, scratchDetails, keys.audience(name), keys.audienceDetails(name), keys.audiences(), scratchDomains, keys.audienceDomains(name),
        keys.audienceVersions(name), keys.auditAll(), keys.auditHead(),
      ];
      const answer = JSON.parse(
        String(
          await this.redis.eval(
            COMMIT_SCRIPT, audienceKeys.length, ...audienceKeys, name, updatedAt, by, now, anyOwner, before.version, common,
            opts.directory ? JSON.stringify({ directory: typeof opts.directory === "function" ? opts.directory() : opts.directory }) : "",
            opts.resolution ? "audienceResolve" : "", opts.whileGroup ?? "", opts.allowEmpty ? "1" : "0",
          ),
        ),
      ) as { err?: string; owner?: string; size: number; version: number; added: number; removed: number };
      if (answer.err === "not_owner") throw notOwner(name, answer.owner ?? "");
      if (answer.err === "redefined") throw new DomainError("conflict", `audience ${name} was redefined while its group was resolved: nothing was changed; try again`);
      if (answer.err) throw new Error(`audience ${name}: upload ${uploadId} expired before it was committed`);
      committed = true;
      const { size, version, added, removed } = answer;
      return { name, size, updatedAt, by, owner: answer.owner ?? by, version, added, removed };
    } finally {
      // On success RENAME already moved the scratch keys; otherwise drop the partial upload.
      if (!committed) await this.redis.del(scratch, scratchDetails, scratchDomains).catch(() => {});
    }
  }

  /**
   * Deletes audience `name` (its owner, or anyone with `anyOwner`): a `not_found` or `forbidden`
   * DomainError otherwise. Messages that named it keep the recipients they froze at submit; an edit
   * or submit naming it afterwards is refused as an unknown audience. The deletion is recorded as
   * the audience's next version and in the audit trail.
   */
  async delete(name: string, by: string, opts: ChangeOptions = {}): Promise<AudienceVersion> {
    if (!AUDIENCE_NAME.test(name)) throw new DomainError("not_found", `audience ${name.slice(0, 80)} does not exist`);
    const now = this.clock.now();
    const at = new Date(now).toISOString();
    const k = [keys.audience(name), keys.audienceDetails(name), keys.audienceDomains(name), keys.audiences(), keys.audienceVersions(name), keys.auditAll(), keys.auditHead()];
    const answer = JSON.parse(String(await this.redis.eval(DELETE_SCRIPT, k.length, ...k, name, by, at, now, opts.anyOwner ? "1" : "0"))) as {
      err?: string;
      owner?: string;
      version: number;
      removed: number;
    };
    if (answer.err === "not_found") throw new DomainError("not_found", `audience ${name} does not exist`);
    if (answer.err) throw notOwner(name, answer.owner ?? "", "delete");
    return { version: answer.version, by, at, size: 0, added: 0, removed: answer.removed, deleted: true };
  }

  /** Every audience in the catalogue, sorted by name. */
  async list(): Promise<AudienceInfo[]> {
    const all = await this.redis.hgetall(keys.audiences());
    return Object.values(all)
      .map(catalogueEntry)
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** The catalogue entry of `name`, or null when there is no such audience (or the name is not valid). */
  async get(name: string): Promise<AudienceInfo | null> {
    if (!AUDIENCE_NAME.test(name)) return null;
    const json = await this.redis.hget(keys.audiences(), name);
    return json === null ? null : catalogueEntry(json);
  }

  /** `get` with the newest versions (at most 50, newest first; a deletion and the versions before it included). */
  async detail(name: string): Promise<AudienceDetail | null> {
    const info = await this.get(name);
    if (!info) return null;
    return { ...info, versions: await this.versions(name, VERSIONS_SHOWN) };
  }

  /** The newest `limit` version records of `name`, newest first. */
  async versions(name: string, limit = VERSIONS_SHOWN): Promise<AudienceVersion[]> {
    if (!AUDIENCE_NAME.test(name) || limit <= 0) return [];
    return (await this.redis.lrange(keys.audienceVersions(name), 0, limit - 1)).map((json) => {
      const v = JSON.parse(json) as AudienceVersion;
      return v.directory ? { ...v, directory: directoryRecord(v.directory) } : v;
    });
  }

  /** The current version and size of `name`, refusing (forbidden, naming the owner) a caller who may not replace it. */
  private async current(name: string, by: string, anyOwner: string): Promise<{ version: number; size: number }> {
    const k = [keys.audience(name), keys.audiences(), keys.audienceVersions(name)];
    const answer = JSON.parse(String(await this.redis.eval(CURRENT_SCRIPT, k.length, ...k, name, by, anyOwner))) as { err?: string; owner?: string; version: number; size: number };
    if (answer.err) throw notOwner(name, answer.owner ?? "");
    return answer;
  }

  /**
   * |upload ∩ current version|, a slice of the upload at a time (COMMON_SLICE_SCRIPT): one command
   * over a million members would hold Redis for ~250 ms, each slice holds it for about 1 ms. Paced
   * within the upload's own budget (`pace`): a thousand slices that each gave way to a stop for up
   * to 250 ms must not outlast the request.
   */
  private async countCommon(scratch: string, audience: string, size: number, pace: PacedStream): Promise<number> {
    let common = 0;
    for (let first = 0; first < size; first += COMMON_SLICE) {
      const startedAt = pace.start();
      common += Number(await this.redis.eval(COMMON_SLICE_SCRIPT, 2, scratch, audience, first, COMMON_SLICE));
      if (first + COMMON_SLICE < size) await pace.after(startedAt);
    }
    return common;
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

/** A catalogue entry, with the owner and version an entry written before they were kept lacks. */
function catalogueEntry(json: string): AudienceInfo {
  const e = JSON.parse(json) as Omit<AudienceInfo, "owner" | "version"> & Partial<Pick<AudienceInfo, "owner" | "version">>;
  return { ...e, owner: e.owner ?? e.by, version: e.version ?? 1, ...(e.directory ? { directory: directoryRecord(e.directory) } : {}) };
}

/** A directory record as Lua's cjson wrote it back: an empty list comes back as {}. */
export function directoryRecord(d: DirectoryRecord): DirectoryRecord {
  const list = (x: unknown): string[] => (Array.isArray(x) ? x.map(String) : []);
  return { ...d, withoutMail: { count: d.withoutMail.count, first: list(d.withoutMail.first) }, invalidMail: { count: d.invalidMail.count, first: list(d.invalidMail.first) } };
}

function notOwner(name: string, owner: string, change: "replace" | "delete" = "replace"): DomainError {
  return new DomainError("forbidden", `audience ${name} belongs to ${owner}: only its owner or an admin may ${change} it`, { owner });
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
