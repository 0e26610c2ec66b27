/**
 * The freeze of a message's recipient set, in slices (issue 18: no long Redis commands): the named
 * lists and the explicit addresses are copied into a scratch set of the submit's own, FREEZE_SLICE
 * members per script call, while Redis serves everyone else between the calls. The submit script
 * then renames the scratch set over the message's recipients in one step, after checking that each
 * list is still the version the copy began with (`audience_changed` otherwise: the caller freezes
 * again). A list replaced during the copy is noticed by the next slice already.
 *
 * Nothing holds the recipients in the process's memory: a slice moves inside Redis.
 */
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import { z } from "zod";
import { UNPACED, type BulkPace } from "./bulk-pace.js";
import { keys } from "./keys.js";

/**
 * Members copied per script call: 500, 2,000 calls for a million. Under the recall-under-load
 * benchmark's load the slices that took over 1 ms averaged 1.6 ms (4.7 ms with slices of 2,000).
 * Larger slices cost more than their share where the scratch set grows: each insert may touch a
 * page of memory Redis has not touched yet (the set's hash table doubles, its nodes are new), and
 * on the benchmark's micro-VM a first touch costs ~16 us, so a slice of 2,000 took up to 28-64 ms
 * under load (session 25), over the 20 ms any command may take (issue 18).
 */
export const FREEZE_SLICE = 500;
/**
 * At most this much of one freeze is spent waiting for running sends: a million's slices waited
 * 4-8 s in the benchmark with slices of 2,000 (with slices of 500 the submit took 21-23 s in all),
 * and a submit is an HTTP request (Node gives it 300 s).
 */
const FREEZE_PACING_MS = 60_000;
/** A scratch set left by a process that died mid-freeze expires after this (a submit takes seconds). */
const SCRATCH_TTL_MS = 3600_000;

const sliceAnswer = z.union([z.object({ copied: z.number().int().nonnegative() }), z.object({ changed: z.literal(true) })]);

/** The slice script's source (the benchmark names it in Redis's slow log by its SHA-1). */
export const FREEZE_SLICE_LUA = readFileSync(new URL("./lua/freeze-slice.lua", import.meta.url), "utf8");

/** A list changed (replaced, deleted) while it was being copied: freeze again. */
export class AudienceChangedError extends Error {
  constructor(readonly audience: string) {
    super(`audience ${audience} changed while the message's recipients were being frozen`);
    this.name = "AudienceChangedError";
  }
}

/** A freeze ready for the submit: its scratch set and the version of each list it copied (0: no such list). */
export interface Frozen {
  scratch: string;
  versions: number[];
  explicit: number;
}

export class RecipientFreeze {
  constructor(
    private readonly redis: Redis,
    /** Slices give way to running sends (store/bulk-pace.ts). */
    private readonly pace: BulkPace = UNPACED,
    /** At most this much of one freeze is spent giving way (ms): a submit is an HTTP request. */
    private readonly maxPacingMs = FREEZE_PACING_MS,
  ) {
    if (!("airlockFreezeSlice" in redis)) redis.defineCommand("airlockFreezeSlice", { numberOfKeys: 3, lua: FREEZE_SLICE_LUA });
  }

  /** At most how many recipients these lists and addresses freeze into (their sizes added up; overlaps counted twice). */
  async sizeAtMost(lists: readonly string[], addresses: readonly string[]): Promise<number> {
    const sizes = lists.length === 0 ? [] : await Promise.all(lists.map((name) => this.redis.zcard(keys.audience(name))));
    return sizes.reduce((a, b) => a + b, addresses.length);
  }

  /** The current version of each list (0 for a list that does not exist: the submit refuses it by name). */
  async versionsOf(lists: readonly string[]): Promise<number[]> {
    if (lists.length === 0) return [];
    const entries = await this.redis.hmget(keys.audiences(), ...lists);
    return entries.map((e) => (e ? Number((JSON.parse(e) as { version?: number }).version ?? 1) : 0));
  }

  /**
   * Copies the lists and the addresses into a new scratch set. Throws AudienceChangedError when a
   * list changed meanwhile (the scratch set is dropped). The caller drops the scratch set
   * (`discard`) when the submit does not take it.
   */
  async freeze(id: string, lists: readonly string[], addresses: readonly string[]): Promise<Frozen> {
    const scratch = keys.recipientsScratch(id, randomBytes(8).toString("hex"));
    const versions = await this.versionsOf(lists);
    const pace = this.pace.budget(this.maxPacingMs);
    try {
      for (const [i, name] of lists.entries()) {
        if (versions[i] === 0) continue; // unknown: the submit names it
        for (let offset = 0; ; offset += FREEZE_SLICE) {
          const startedAt = pace.start();
          const raw = await (this.redis as unknown as Record<string, (...a: Array<string | number>) => Promise<string>>).airlockFreezeSlice!(
            keys.audiences(),
            keys.audience(name),
            scratch,
            name,
            String(versions[i]),
            offset,
            FREEZE_SLICE,
            SCRATCH_TTL_MS,
          );
          const a = sliceAnswer.parse(JSON.parse(raw));
          if ("changed" in a) throw new AudienceChangedError(name);
          if (a.copied < FREEZE_SLICE) break;
          await pace.after(startedAt);
        }
      }
      for (let i = 0; i < addresses.length; i += FREEZE_SLICE) {
        const chunk = addresses.slice(i, i + FREEZE_SLICE);
        await this.redis.multi().zadd(scratch, ...chunk.flatMap((a) => [0, a])).pexpire(scratch, SCRATCH_TTL_MS).exec();
      }
    } catch (e) {
      await this.discard(scratch);
      throw e;
    }
    return { scratch, versions, explicit: addresses.length };
  }

  /** Drops a scratch set the submit did not take (UNLINK: freed in the background, however large). */
  async discard(scratch: string): Promise<void> {
    await this.redis.unlink(scratch).catch(() => {}); // expires anyway
  }
}
