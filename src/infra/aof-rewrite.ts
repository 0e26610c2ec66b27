/**
 * Redis's AOF rewrite, run while Redis is quiet (issue 18). Redis rewrites its append-only file once it
 * has grown by `auto-aof-rewrite-percentage` (default 100%) over its size after the last rewrite
 * and is at least `auto-aof-rewrite-min-size` (64 MB). A rewrite forks Redis: the fork stopped it
 * for 45-65 ms on the bench machine, and every write after it faults on a page not yet copied
 * (copy-on-write), so commands that take 1-5 ms took 25-80 ms for a second or two after each fork.
 * A large send writes several times its audience's size to the AOF and met several rewrites:
 * recalls answered in up to 167-326 ms with rewrites, 88-96 ms without (docs/performance.md,
 * sessions 24-25). What a fork costs after it is the pages written while the child runs: a rewrite
 * started while an upload or a freeze writes stalled recalls as long as one during a send.
 *
 * So, with `REDIS_AOF_REWRITE=when-quiet` (the default), Airlock takes the rule over: it keeps
 * Redis's own rule (percentage and minimum size) under `keys.aofRule`, sets Redis's percentage to 0
 * (Redis then never rewrites by itself), and every few seconds applies that rule itself, starting
 * `BGREWRITEAOF` only while Redis is quiet: no fan-out job runs and the AOF grew by less than
 * QUIET_BYTES since the last look (no upload, freeze or other bulk write under way). Writes that
 * never pause do not let the file grow without bound: once it has grown BACKSTOP times the rule's
 * percentage (5x its base at 100%), the rewrite starts anyway. `REDIS_AOF_REWRITE=redis` hands the
 * rule back.
 *
 * Every worker process runs a keeper; they agree without a lock (each reads Redis's state, a
 * second `BGREWRITEAOF` while one runs is refused and ignored). The rule is taken over again after
 * a failover (a new primary with its own rule) or when an operator sets a percentage again (the new
 * one becomes the rule). A Redis that refuses `CONFIG SET` (a managed one) keeps its own rule: the
 * keeper logs that once and stops.
 */
import type { Redis } from "ioredis";
import { keys } from "../store/keys.js";

export type AofRewriteMode = "when-quiet" | "redis";

/** Redis's own rewrite rule (`auto-aof-rewrite-percentage`, `auto-aof-rewrite-min-size`). */
export interface AofRule {
  percentage: number;
  minSize: number;
}

/** From `INFO persistence`. */
export interface AofState {
  enabled: boolean;
  /** A rewrite runs or is scheduled to run. */
  busy: boolean;
  currentSize: number;
  baseSize: number;
}

/**
 * Writes that never pause still get a rewrite once the AOF has grown this many times the rule's
 * percentage over its base (5x the base at the default 100%): one stall while busy, rather than a
 * disk filled by a day of sends.
 */
export const BACKSTOP = 4;

/**
 * Redis is quiet when the AOF grew by less than this between two looks (CHECK_EVERY_MS): what an
 * idle service writes (job bookkeeping, a few edits, sends to a handful) is kilobytes; an upload or a
 * freeze of a large list writes megabytes a second.
 */
export const QUIET_BYTES = 1 << 20;

export type AofDecision = "not-due" | "wait" | "rewrite" | "rewrite-while-busy";

/** Redis's own test (serverCron: growth over the base, in percent, and the minimum size), then whether Redis is quiet. */
export function aofDecision(state: AofState, rule: AofRule, quiet: boolean): AofDecision {
  if (!state.enabled || state.busy || rule.percentage <= 0) return "not-due";
  const base = state.baseSize > 0 ? state.baseSize : 1; // as Redis: no base yet counts as one byte
  const growth = (state.currentSize * 100) / base - 100;
  if (state.currentSize <= rule.minSize || growth < rule.percentage) return "not-due";
  if (quiet) return "rewrite";
  return growth >= BACKSTOP * rule.percentage ? "rewrite-while-busy" : "wait";
}

export function parseAofState(info: string): AofState {
  const field = (name: string) => {
    const m = new RegExp(`^${name}:(\\S+)`, "m").exec(info);
    return m ? m[1]! : "";
  };
  const num = (name: string) => Number(field(name)) || 0;
  return {
    enabled: field("aof_enabled") === "1",
    busy: field("aof_rewrite_in_progress") === "1" || field("aof_rewrite_scheduled") === "1",
    currentSize: num("aof_current_size"),
    baseSize: num("aof_base_size"),
  };
}

/** How often the keeper looks: a quiet gap of a few seconds is enough for a rewrite to begin. */
export const CHECK_EVERY_MS = 5_000;

export interface AofRewriteLog {
  info(msg: string): void;
  warn(msg: string): void;
}

export class AofRewriteKeeper {
  private stopped = false;
  /** The AOF's size at the last look (null before the first, or after a failed one). */
  private lastSize: number | null = null;
  /** Logged once: the rule is Redis's (refused) or nobody's (operator set 0). */
  private said = new Set<string>();

  constructor(
    private readonly o: {
      redis: Redis;
      /** Is any fan-out job running? (the fan-out queue's active jobs). */
      sendsRunning(): Promise<boolean>;
      log: AofRewriteLog;
      /** Told each rewrite started (the `airlock_aof_rewrites_total` counter). */
      onRewrite?(when: "quiet" | "busy"): void;
    },
  ) {}

  /**
   * One look: takes the rule over if Redis has one, and starts a rewrite if it is due and allowed.
   * Answers what it decided; `unmanaged` once Redis refused to give its rule up (then stop ticking).
   */
  async tick(): Promise<AofDecision | "unmanaged" | "no-rule"> {
    const rule = await this.takeRule();
    if (rule === "unmanaged" || rule === "no-rule") return rule;
    const state = parseAofState(await this.o.redis.info("persistence"));
    const written = this.lastSize === null ? Infinity : state.currentSize - this.lastSize; // negative: rewritten since (the file starts again)
    this.lastSize = state.currentSize;
    const due = aofDecision(state, rule, true);
    if (due !== "rewrite") return due;
    // Asked only when due: one more round trip on the queue connection.
    const decision = aofDecision(state, rule, written < QUIET_BYTES && !(await this.o.sendsRunning()));
    if (decision === "rewrite" || decision === "rewrite-while-busy") {
      try {
        await this.o.redis.bgrewriteaof();
      } catch (e) {
        // Another worker's keeper started one a moment ago: Redis refuses the second, as it should.
        if (/in progress/i.test((e as Error).message)) return "not-due";
        throw e;
      }
      const when = decision === "rewrite" ? "quiet" : "busy";
      this.o.onRewrite?.(when);
      const growth = Math.round((state.currentSize * 100) / Math.max(1, state.baseSize) - 100);
      if (when === "quiet") this.o.log.info(`Redis AOF rewrite started while Redis is quiet (the file grew ${growth}% over its base)`);
      else this.o.log.warn(`Redis AOF rewrite started while sends or bulk writes run: the file grew ${growth}% over its base, ${BACKSTOP}x the rule's ${rule.percentage}% (recalls may stall for a moment)`);
    }
    return decision;
  }

  /** Looks now (the rule is taken over at once), then every CHECK_EVERY_MS until the returned stop is called (or Redis keeps its own rule). */
  start(): () => void {
    let timer: NodeJS.Timeout | null = null;
    const look = () => {
      if (this.stopped) return;
      this.tick()
        .then((r) => (r === "unmanaged" ? (this.stopped = true) : undefined))
        // Redis away or busy loading: the next look tries again; nothing is lost by a late rewrite.
        .catch((e: unknown) => {
          this.lastSize = null;
          this.sayOnce("error", `AOF rewrite check failed (tried again every ${CHECK_EVERY_MS / 1000} s, said once): ${(e as Error).message}`, "warn");
        })
        .finally(() => {
          if (this.stopped) return;
          timer = setTimeout(look, CHECK_EVERY_MS);
          timer.unref();
        });
    };
    look();
    return () => {
      this.stopped = true;
      if (timer) clearTimeout(timer);
    };
  }

  /** `REDIS_AOF_REWRITE=redis`: gives Redis back the rule a keeper took (if any). */
  static async handBack(redis: Redis, log: AofRewriteLog): Promise<void> {
    const kept = await redis.get(keys.aofRule());
    if (kept === null) return;
    const rule = JSON.parse(kept) as AofRule;
    const [, percentage] = (await redis.config("GET", "auto-aof-rewrite-percentage")) as [string, string];
    if (Number(percentage) === 0) await redis.config("SET", "auto-aof-rewrite-percentage", String(rule.percentage));
    await redis.del(keys.aofRule());
    log.info(`Redis rewrites its AOF by its own rule again (auto-aof-rewrite-percentage ${Number(percentage) === 0 ? rule.percentage : percentage})`);
  }

  private async takeRule(): Promise<AofRule | "unmanaged" | "no-rule"> {
    const { redis } = this.o;
    const cfg = (await redis.config("GET", "auto-aof-rewrite-*")) as string[]; // [name, value, ...]
    const value = (name: string) => Number(cfg[cfg.indexOf(name) + 1]);
    const percentage = value("auto-aof-rewrite-percentage");
    const minSize = value("auto-aof-rewrite-min-size");
    if (percentage > 0) {
      // Redis has a rule of its own (first start, a new primary, an operator's change): it becomes ours.
      const rule: AofRule = { percentage, minSize };
      await redis.set(keys.aofRule(), JSON.stringify(rule));
      try {
        await redis.config("SET", "auto-aof-rewrite-percentage", "0");
      } catch (e) {
        await redis.del(keys.aofRule());
        this.o.log.warn(`Redis refused CONFIG SET (${(e as Error).message}): it rewrites its AOF by its own rule, during sends too (REDIS_AOF_REWRITE=redis silences this)`);
        return "unmanaged";
      }
      this.sayOnce(`rule ${percentage} ${minSize}`, `Airlock rewrites Redis's AOF while Redis is quiet, by Redis's rule (${percentage}% growth, at least ${minSize} bytes): auto-aof-rewrite-percentage is now 0, the rule kept in ${keys.aofRule()}`);
      return rule;
    }
    const kept = await redis.get(keys.aofRule());
    if (kept === null) {
      // 0 set by an operator, not by a keeper: rewrites are theirs to run (BGREWRITEAOF from cron).
      this.sayOnce("no-rule", "Redis's auto-aof-rewrite-percentage is 0 and no rule was kept: Airlock starts no AOF rewrite");
      return "no-rule";
    }
    // The minimum size as Redis has it now: an operator may change it while the percentage is ours.
    return { percentage: (JSON.parse(kept) as AofRule).percentage, minSize };
  }

  private sayOnce(what: string, msg: string, level: "info" | "warn" = "info"): void {
    if (this.said.has(what)) return;
    this.said.add(what);
    this.o.log[level](msg);
  }
}
