/**
 * How many audience uploads one user runs at a time, counted in Redis so the limit holds across
 * every API process.
 *
 * Each running upload holds a lease in a sorted set per user (member: an id of the upload, score:
 * when the lease ends, in Redis's own clock so API processes with skewed clocks agree). A new
 * upload first drops the leases that ended, then takes one if fewer than the limit are held, all
 * in one script. The process holding a lease renews it every third of its length while the upload
 * runs and gives it back when the upload ends, however it ends; a process that crashes mid-upload
 * stops renewing, so its lease ends on its own and blocks the user for at most one lease length.
 * The key itself expires with its latest lease, so an idle user leaves nothing behind.
 */
import { randomUUID } from "node:crypto";
import type { Redis } from "ioredis";
import { DomainError } from "../domain/errors.js";
import { keys } from "../store/keys.js";


/** Redis's clock in ms, shared by the scripts below. */
const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

/** Expires the key with its latest lease (all leases of a key may not have the same length). */
const EXPIRE_WITH_LAST = `
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if last[2] then redis.call('PEXPIREAT', KEYS[1], last[2]) end
`;

/**
 * KEYS: 1 the user's leases. ARGV: 1 upload id, 2 most uploads at a time, 3 lease length in ms.
 * Answers {1, held} when the lease was taken (held: the user's uploads, this one included), or
 * {0, held} when the user already runs as many as allowed.
 */
const ACQUIRE_SCRIPT = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[2]) then return {0, held} end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
${EXPIRE_WITH_LAST}
return {1, held + 1}
`;

/**
 * KEYS: 1 the user's leases. ARGV: 1 upload id, 2 lease length in ms.
 * Extends a lease still held (1); one that already ended is not taken again (0): another upload
 * may have its place by now.
 */
const RENEW_SCRIPT = `${NOW}
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[2]), ARGV[1])
${EXPIRE_WITH_LAST}
return 1
`;

/** A running upload's place: give it back with `release` when the upload ends, however it ends. */
export interface UploadSlot {
  /** Gives the place back (once; later calls do nothing). Never throws: a lease left behind ends on its own. */
  release(): Promise<void>;
}

export interface UploadSlotOptions {
  redis: Redis;
  /** Uploads one user may run at a time. */
  max: number;
  /** How long a lease lasts without renewal; renewed every third of it. */
  leaseMs: number;
}

export class UploadSlots {
  constructor(private readonly opts: UploadSlotOptions) {
    if (!Number.isInteger(opts.max) || opts.max < 1) throw new Error(`upload slots: max must be a positive integer, not ${opts.max}`);
    if (!Number.isInteger(opts.leaseMs) || opts.leaseMs < 3) throw new Error(`upload slots: leaseMs must be an integer of at least 3, not ${opts.leaseMs}`);
  }

  /** Takes one of `user`'s places, or throws a `rate_limited` DomainError naming the limit when all are taken. */
  async acquire(user: string): Promise<UploadSlot> {
    const { redis, max, leaseMs } = this.opts;
    const key = keys.uploadSlots(user);
    const id = randomUUID();
    const [taken] = (await redis.eval(ACQUIRE_SCRIPT, 1, key, id, max, leaseMs)) as [number, number];
    if (taken !== 1) {
      throw new DomainError("rate_limited", `at most ${max} audience upload${max === 1 ? "" : "s"} at a time per user: wait for one to end and try again`, {
        maxConcurrentUploads: max,
      });
    }
    // unref: a running upload keeps the process alive by its socket, not by this timer.
    const renewal = setInterval(() => void redis.eval(RENEW_SCRIPT, 1, key, id, leaseMs).catch(() => {}), Math.floor(leaseMs / 3));
    renewal.unref();
    let released = false;
    return {
      async release() {
        if (released) return;
        released = true;
        clearInterval(renewal);
        await redis.zrem(key, id).catch(() => {});
      },
    };
  }
}
