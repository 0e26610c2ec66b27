/**
 * Redis's AOF rewrite, run while Redis is quiet (issue 18). Redis rewrites its append-only file once
 * it has grown by `auto-aof-rewrite-percentage` (default 100%) over its size after the last rewrite
 * and is larger than `auto-aof-rewrite-min-size` (64 MB). A rewrite forks Redis: the fork stopped it
 * for 45-65 ms on the bench machine, and every write after it faults on a page not yet copied
 * (copy-on-write), so commands that take 1-5 ms took 25-80 ms for a second or two after each fork.
 * A large send writes several times its audience's size to the AOF, and Redis's rule fires when
 * the file grows, that is while Airlock is busy: recalls answered in up to 167-326 ms with
 * rewrites, 88-96 ms without (docs/performance-history.md, sessions 24-25). What a fork costs after it is
 * the pages written while the child runs: one started while an upload or a freeze writes stalls
 * recalls as long as one during a send.
 *
 * So, with `REDIS_AOF_REWRITE=when-quiet` (the default), each worker process's keeper takes the
 * rule over: it keeps Redis's percentage under `keys.aofRule` and raises Redis's own to BACKSTOP
 * times it plus one (odd, so that it is told from a round value an operator sets), then every few
 * seconds applies the kept rule itself, starting `BGREWRITEAOF` only while Redis is quiet: no fan-out job runs and the AOF grew by less than QUIET_BYTES since the last look
 * (no upload, freeze or other bulk write under way). Redis is never left without a rule of its own:
 * if writes never pause, or no keeper runs any more (a rollback, workers scaled to zero, a fleet
 * half switched to `redis`), Redis still rewrites by itself at BACKSTOP times the percentage.
 * `REDIS_AOF_REWRITE=redis` gives Redis its percentage back.
 *
 * Several keepers agree without a lock: each reads Redis's state, and a second `BGREWRITEAOF` while
 * one runs is refused (and ignored). A takeover or a hand-back writes the key and the percentage in
 * one transaction, WATCHing the key on a connection of the keeper's own, so that two of them never
 * take a raised percentage for Redis's rule (which would raise it again). A percentage that is
 * neither 0 nor the one a keeper set (a new primary after a failover, an operator's change) becomes
 * the kept rule at the next look. A percentage of 0 is an operator's "no automatic rewrite"
 * (keepers never set it) and is left alone. A Redis that refuses `CONFIG SET` or `BGREWRITEAOF` (an
 * ACL without them) keeps its own rule (given back, for the latter): said once, and the keeper stops. A rewrite that fails (the
 * fork, or its child) is tried again no sooner than Redis's own limiter would (1 min, doubling per
 * failure in a row, at most 1 h): a manual `BGREWRITEAOF` bypasses that limiter.
 */
import type { Redis } from "ioredis";
import { keys } from "../store/keys.js";

export type AofRewriteMode = "when-quiet" | "redis";

/** What keepers keep under keys.aofRule: Redis's percentage, and what they set Redis's to instead. */
export interface KeptRule {
  percentage: number;
  setTo: number;
}

/** From `INFO persistence` (fields Redis 6.2 has too). */
export interface AofState {
  enabled: boolean;
  /** A rewrite runs or is scheduled, or another fork (an RDB save, a module's) runs: a rewrite asked now would only be scheduled. */
  busy: boolean;
  currentSize: number;
  baseSize: number;
  /** The last rewrite's outcome (`aof_last_bgrewrite_status`). */
  lastRewriteOk: boolean;
}

/**
 * Redis's own percentage while a keeper keeps the rule: this many times the rule's (plus one). At
 * the default 100% Redis rewrites by itself once the file is 3x its base (a keeper rewrites at 2x
 * while quiet), so the disk needs about 4x the data (the file and a rewrite's new base) against 3x
 * with Redis's rule alone.
 */
export const BACKSTOP = 2;

/** The percentage a keeper sets Redis's own to for a kept rule (Redis takes at most a 32-bit int). */
export const raisedPercentage = (rule: number) => Math.min(2 ** 31 - 1, BACKSTOP * rule + 1);

/**
 * Redis is quiet when the AOF grew by less than this between two looks (CHECK_EVERY_MS): what an
 * idle service writes (job bookkeeping, a few edits, sends to a handful) is kilobytes; an upload or a
 * freeze of a large list writes megabytes a second.
 */
export const QUIET_BYTES = 1 << 20;

/** How often a keeper looks: a quiet gap of a few seconds is enough for a rewrite to begin. */
export const CHECK_EVERY_MS = 5_000;

/** After a failed rewrite, the next no sooner than this, doubling per failure in a row up to RETRY_MAX_MS: Redis's own limiter's figures. */
export const RETRY_AFTER_FAILURE_MS = 60_000;
const RETRY_MAX_MS = 3_600_000;

/**
 * How long a stop waits for a look in flight: a look is a few round trips, but while Redis is away
 * ioredis retries its commands, and a shutdown must not wait for that.
 */
const STOP_WAIT_MS = 2_000;

export type AofDecision = "not-due" | "wait" | "rewrite";

/** How far the AOF grew over its base, in percent, as Redis computes it (no base yet counts as one byte). */
export function aofGrowth(state: Pick<AofState, "currentSize" | "baseSize">): number {
  return (state.currentSize * 100) / Math.max(1, state.baseSize) - 100;
}

/** Redis's own test (serverCron: growth over the base, in percent, above the minimum size), then whether Redis is quiet. */
export function aofDecision(state: AofState, rule: { percentage: number; minSize: number }, quiet: boolean): AofDecision {
  if (!state.enabled || state.busy || rule.percentage <= 0) return "not-due";
  if (state.currentSize <= rule.minSize || aofGrowth(state) < rule.percentage) return "not-due";
  return quiet ? "rewrite" : "wait";
}

export function parseAofState(info: string): AofState {
  const field = (name: string) => new RegExp(`^${name}:(\\S+)`, "m").exec(info)?.[1] ?? "";
  const num = (name: string) => Number(field(name)) || 0;
  const on = (name: string) => field(name) === "1";
  return {
    enabled: on("aof_enabled"),
    busy: on("aof_rewrite_in_progress") || on("aof_rewrite_scheduled") || on("rdb_bgsave_in_progress") || on("module_fork_in_progress"),
    currentSize: num("aof_current_size"),
    baseSize: num("aof_base_size"),
    lastRewriteOk: field("aof_last_bgrewrite_status") !== "err",
  };
}

/** The key's value, if it is one a keeper wrote (else null: a corrupted key is not acted on). */
export function parseKeptRule(raw: string): KeptRule | null {
  try {
    const v = JSON.parse(raw) as Partial<KeptRule>;
    if (Number.isInteger(v.percentage) && v.percentage! > 0 && Number.isInteger(v.setTo) && v.setTo! > 0) return { percentage: v.percentage!, setTo: v.setTo! };
  } catch {
    // not JSON: below
  }
  return null;
}

/** An error of a Redis that will never take the command from this client (ACL, a renamed or unknown command, an unknown parameter). */
export function refused(e: unknown): boolean {
  return /NOPERM|unknown command|unknown subcommand|Unsupported CONFIG parameter|Unknown option/i.test((e as Error).message);
}

export interface AofRewriteLog {
  info(msg: string): void;
  warn(msg: string): void;
}

export type AofLook = AofDecision | "backing-off" | "unmanaged" | "no-rule";

export class AofRewriteKeeper {
  private stopped = false;
  /** The AOF's size and base at the last look (null before the first, or after a failed one). */
  private last: { size: number; base: number } | null = null;
  /** A rewrite this keeper asked for, whose outcome is not seen yet; failures in a row; when the next may start. */
  private asked = false;
  private streak = 0;
  private retryAt = 0;
  /** Said once: no rule, a corrupted key, a failed look (said again after a good one). */
  private said = new Set<string>();
  private readonly now: () => number;
  private readonly everyMs: number;

  constructor(
    private readonly o: {
      /** A connection of the keeper's own: it WATCHes the key (a shared connection's other users would see the WATCH). */
      redis: Redis;
      /** Is any fan-out job running? (the fan-out queue's active jobs). */
      sendsRunning(): Promise<boolean>;
      log: AofRewriteLog;
      /** Told each rewrite asked for: begun now, or scheduled by Redis after another fork (the `airlock_aof_rewrites_total` counter). */
      onRewrite?(start: "now" | "scheduled"): void;
      now?(): number;
      /** Between two looks (default CHECK_EVERY_MS). */
      everyMs?: number;
    },
  ) {
    this.now = o.now ?? Date.now;
    this.everyMs = o.everyMs ?? CHECK_EVERY_MS;
  }

  /**
   * One look: takes the rule over if Redis has one of its own, and starts a rewrite if it is due
   * and Redis is quiet. Answers what it did; `unmanaged` once Redis refused (then stop).
   */
  async tick(): Promise<AofLook> {
    const { redis } = this.o;
    const state = parseAofState(await redis.info("persistence"));
    if (!state.enabled) return "not-due"; // no AOF: nothing to rewrite, no setting to touch
    const rule = await this.takeRule();
    if (typeof rule === "string") return rule;
    // Writes since the last look. A different base (a rewrite finished, a new primary) or a smaller
    // file makes this a first look: not known to be quiet.
    const prev = this.last;
    this.last = { size: state.currentSize, base: state.baseSize };
    const written = prev === null || prev.base !== state.baseSize || state.currentSize < prev.size ? Infinity : state.currentSize - prev.size;
    if (this.asked && !state.busy) {
      // The rewrite this keeper asked for is over: how did it end? (Redis 6.2 has no failure count.)
      this.asked = false;
      if (state.lastRewriteOk) this.streak = 0;
      else this.failed("it ended in an error");
    }
    const due = aofDecision(state, rule, true);
    if (due !== "rewrite") return due;
    if (this.now() < this.retryAt) return "backing-off";
    // Sends asked about only when due: one more round trip on the queue connection.
    if (written >= QUIET_BYTES || (await this.o.sendsRunning())) return "wait";
    let reply: string;
    try {
      reply = String(await redis.bgrewriteaof());
    } catch (e) {
      const message = (e as Error).message;
      // Another worker's keeper started one a moment ago: Redis refuses the second, as it should.
      if (/in progress/i.test(message)) return "not-due";
      if (refused(e)) {
        await AofRewriteKeeper.handBack(redis, this.o.log).catch(() => {});
        this.o.log.warn(`Redis refused BGREWRITEAOF (${message}): it rewrites its AOF by its own rule, during sends too (REDIS_AOF_REWRITE=redis silences this)`);
        return "unmanaged";
      }
      this.failed(`Redis answered: ${message}`); // a fork that failed (memory), a file it could not open
      return "backing-off";
    }
    this.asked = true;
    const growth = Math.round(aofGrowth(state));
    if (/scheduled/i.test(reply)) {
      // Another fork began between the look and the command: Redis starts the rewrite after it, quiet or not.
      this.o.onRewrite?.("scheduled");
      this.o.log.info(`Redis AOF rewrite scheduled (the file grew ${growth}% over its base; Redis starts it once its other child process ends)`);
    } else {
      this.o.onRewrite?.("now");
      this.o.log.info(`Redis AOF rewrite started while Redis is quiet (the file grew ${growth}% over its base)`);
    }
    return "rewrite";
  }

  /**
   * Looks now (the rule is taken over at once), then every `everyMs` until the returned stop is
   * called (or Redis refuses). The stop resolves once a look in flight is over (at most STOP_WAIT_MS).
   */
  start(): () => Promise<void> {
    let timer: NodeJS.Timeout | null = null;
    let looking: Promise<void> = Promise.resolve();
    const look = () => {
      if (this.stopped) return;
      looking = this.tick()
        .then((r) => {
          this.said.delete("error"); // a later failure is worth saying again
          if (r === "unmanaged") this.stopped = true;
        })
        // Redis away or busy loading: the next look tries again; nothing is lost by a late rewrite.
        .catch((e: unknown) => {
          this.last = null;
          this.sayOnce("error", `AOF rewrite check failed (tried again every ${this.everyMs / 1000} s): ${(e as Error).message}`, "warn");
        })
        .finally(() => {
          if (this.stopped) return;
          timer = setTimeout(look, this.everyMs);
          timer.unref();
        });
    };
    look();
    return async () => {
      this.stopped = true;
      if (timer) clearTimeout(timer);
      let waited: NodeJS.Timeout | undefined;
      await Promise.race([looking, new Promise<void>((r) => (waited = setTimeout(r, STOP_WAIT_MS)))]);
      clearTimeout(waited);
    };
  }

  /**
   * `REDIS_AOF_REWRITE=redis` (or a Redis that refused BGREWRITEAOF): gives Redis back the percentage
   * a keeper kept, unless an operator changed it since, and deletes the key; in one transaction
   * with the key WATCHed, tried again if a keeper changed the key meanwhile.
   */
  static async handBack(redis: Redis, log: AofRewriteLog): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      await redis.watch(keys.aofRule());
      const raw = await redis.get(keys.aofRule());
      if (raw === null) {
        await redis.unwatch();
        return;
      }
      const kept = parseKeptRule(raw);
      const [, now] = (await redis.config("GET", "auto-aof-rewrite-percentage")) as [string, string];
      const tx = redis.multi();
      // Not the keepers' value any more (an operator's since): theirs stands.
      if (kept && Number(now) === kept.setTo) tx.config("SET", "auto-aof-rewrite-percentage", String(kept.percentage));
      const done = await tx.del(keys.aofRule()).exec();
      if (done !== null) {
        const [, after] = (await redis.config("GET", "auto-aof-rewrite-percentage")) as [string, string];
        log.info(`Redis rewrites its AOF by its own rule again (auto-aof-rewrite-percentage ${after}); a worker with REDIS_AOF_REWRITE=when-quiet still running takes it over again`);
        return;
      }
      // A keeper wrote the key meanwhile: read again (a handful of tries; keepers look every few seconds).
      if (attempt === 5) throw new Error("the AOF rule key kept changing");
    }
  }

  private async takeRule(): Promise<{ percentage: number; minSize: number } | "unmanaged" | "no-rule" | "not-due"> {
    const { redis } = this.o;
    // WATCHed: a hand-back or another keeper's takeover between these reads and the write below
    // makes the write fail (and the next look read again), never take a raised value for a rule.
    await redis.watch(keys.aofRule());
    try {
      const cfg = (await redis.config("GET", "auto-aof-rewrite-*")) as string[]; // [name, value, ...]
      const value = (name: string) => {
        const i = cfg.indexOf(name);
        const v = i >= 0 ? Number(cfg[i + 1]) : NaN;
        if (!Number.isFinite(v)) throw new Error(`CONFIG GET answered no number for ${name}`);
        return v;
      };
      const percentage = value("auto-aof-rewrite-percentage");
      const minSize = value("auto-aof-rewrite-min-size");
      if (percentage === 0) {
        // Keepers never set 0: an operator did (no automatic rewrite; BGREWRITEAOF from cron).
        this.sayOnce("no-rule", "Redis's auto-aof-rewrite-percentage is 0: no automatic AOF rewrite, and Airlock starts none");
        return "no-rule";
      }
      const raw = await redis.get(keys.aofRule());
      const kept = raw === null ? null : parseKeptRule(raw);
      if (raw !== null && kept === null) {
        // Not acted on: taking the percentage Redis has now for the rule could be taking a raised one.
        this.sayOnce("corrupt", `${keys.aofRule()} holds no rule a keeper wrote (${raw.slice(0, 80)}): Airlock starts no AOF rewrite. Repair: DEL it and CONFIG SET auto-aof-rewrite-percentage to the rule wanted`, "warn");
        return "no-rule";
      }
      if (kept && percentage === kept.setTo) return { percentage: kept.percentage, minSize };
      // Redis has a rule of its own (first start, a new primary, an operator's change): it is kept,
      // and Redis's own raised to the backstop.
      const rule: KeptRule = { percentage, setTo: raisedPercentage(percentage) };
      let configError: Error | null | undefined;
      try {
        const done = await redis.multi().set(keys.aofRule(), JSON.stringify(rule)).config("SET", "auto-aof-rewrite-percentage", String(rule.setTo)).exec();
        if (done === null) return "not-due"; // the key changed meanwhile: the next look reads again
        configError = done[1]?.[0];
        if (configError) await redis.del(keys.aofRule()).catch(() => {}); // nothing was taken
      } catch (e) {
        // An ACL refuses CONFIG SET when it is queued: the whole transaction is discarded (EXECABORT).
        configError = (e as { previousErrors?: Error[] }).previousErrors?.find(refused) ?? (e as Error);
      }
      if (configError) {
        if (!refused(configError)) throw configError; // a timeout, a dropped connection: the next look tries again
        this.o.log.warn(`Redis refused CONFIG SET (${configError.message}): it rewrites its AOF by its own rule, during sends too (REDIS_AOF_REWRITE=redis silences this)`);
        return "unmanaged";
      }
      this.said.delete("no-rule"); // a later 0 is worth saying again
      this.o.log.info(
        `Airlock rewrites Redis's AOF while Redis is quiet, by Redis's rule (${percentage}% growth, over ${minSize} bytes, kept in ${keys.aofRule()}); Redis's own auto-aof-rewrite-percentage is now ${rule.setTo}, for when writes never pause or no worker runs`,
      );
      return { percentage, minSize };
    } finally {
      await redis.unwatch();
    }
  }

  /** A failed rewrite: the next no sooner than Redis's limiter would (1 min, doubling per failure in a row, at most 1 h). */
  private failed(why: string): void {
    this.streak += 1;
    const wait = Math.min(RETRY_MAX_MS, RETRY_AFTER_FAILURE_MS * 2 ** (this.streak - 1));
    this.retryAt = this.now() + wait;
    this.o.log.warn(`Redis's AOF rewrite failed, ${this.streak} in a row (${why}; see Redis's log: memory for the fork, disk space); the next in ${Math.round(wait / 1000)} s at the earliest`);
  }

  private sayOnce(what: string, msg: string, level: "info" | "warn" = "info"): void {
    if (this.said.has(what)) return;
    this.said.add(what);
    this.o.log[level](msg);
  }
}
