/**
 * Redis's AOF rewrite, run between sends (issue 18). Redis rewrites its append-only file once it
 * has grown by `auto-aof-rewrite-percentage` (default 100%) over its size after the last rewrite
 * and is at least `auto-aof-rewrite-min-size` (64 MB). A rewrite forks Redis: the fork stopped it
 * for 45-65 ms on the bench machine, and every write after it faults on a page not yet copied
 * (copy-on-write), so commands that take 1-5 ms took 25-80 ms for a second or two after each fork.
 * A large send writes several times its audience's size to the AOF and met several rewrites:
 * recalls answered in up to 167-326 ms with rewrites, 88-96 ms without (docs/performance.md,
 * session 24).
 *
 * So, with `REDIS_AOF_REWRITE=between-sends` (the default), Airlock takes the rule over: it keeps
 * Redis's own rule (percentage and minimum size) under `keys.aofRule`, sets Redis's percentage to 0
 * (Redis then never rewrites by itself), and every few seconds applies that rule itself, starting
 * `BGREWRITEAOF` only while no fan-out job runs. A send that never pauses does not let the file grow
 * without bound: once it has grown BACKSTOP times the rule's percentage (5x its base at 100%), the
 * rewrite starts anyway, during the send. `REDIS_AOF_REWRITE=redis` hands the rule back.
 *
 * Every worker process runs a keeper; they agree without a lock (each reads Redis's state, a
 * second `BGREWRITEAOF` while one runs is refused and ignored). The rule is taken over again after
 * a failover (a new primary with its own rule) or when an operator sets a percentage again (the new
 * one becomes the rule). A Redis that refuses `CONFIG SET` (a managed one) keeps its own rule: the
 * keeper logs that once and stops.
 */
import type { Redis } from "ioredis";
import { keys } from "../store/keys.js";

export type AofRewriteMode = "between-sends" | "redis";

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
 * A send that never stops still gets a rewrite once the AOF has grown this many times the rule's
 * percentage over its base (5x the base at the default 100%): a stall during one send, rather than
 * a disk filled by a day of sends.
 */
export const BACKSTOP = 4;

export type AofDecision = "not-due" | "wait-for-sends" | "rewrite" | "rewrite-during-sends";

/** Redis's own test (serverCron: growth over the base, in percent, and the minimum size), then the sends. */
export function aofDecision(state: AofState, rule: AofRule, sendsRunning: boolean): AofDecision {
  if (!state.enabled || state.busy || rule.percentage <= 0) return "not-due";
  const base = state.baseSize > 0 ? state.baseSize : 1; // as Redis: no base yet counts as one byte
  const growth = (state.currentSize * 100) / base - 100;
  if (state.currentSize <= rule.minSize || growth < rule.percentage) return "not-due";
  if (!sendsRunning) return "rewrite";
  return growth >= BACKSTOP * rule.percentage ? "rewrite-during-sends" : "wait-for-sends";
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

/** How often the keeper looks: an idle gap of a few seconds between sends is enough for a rewrite to begin. */
export const CHECK_EVERY_MS = 5_000;

export interface AofRewriteLog {
  info(msg: string): void;
  warn(msg: string): void;
}

export class AofRewriteKeeper {
  private stopped = false;
  /** Logged once: the rule is Redis's (refused) or nobody's (operator set 0). */
  private said = new Set<string>();

  constructor(
    private readonly o: {
      redis: Redis;
      /** Is any fan-out job running? (the fan-out queue's active jobs). */
      sendsRunning(): Promise<boolean>;
      log: AofRewriteLog;
      /** Told each rewrite started (the `airlock_aof_rewrites_total` counter). */
      onRewrite?(during: "between-sends" | "during-sends"): void;
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
    // Only asked when it matters: the check is one more round trip on the queue connection.
    const due = aofDecision(state, rule, false);
    if (due !== "rewrite") return due;
    const decision = aofDecision(state, rule, await this.o.sendsRunning());
    if (decision === "rewrite" || decision === "rewrite-during-sends") {
      try {
        await this.o.redis.bgrewriteaof();
      } catch (e) {
        // Another worker's keeper started one a moment ago: Redis refuses the second, as it should.
        if (/in progress/i.test((e as Error).message)) return "not-due";
        throw e;
      }
      const during = decision === "rewrite" ? "between-sends" : "during-sends";
      this.o.onRewrite?.(during);
      const growth = Math.round((state.currentSize * 100) / Math.max(1, state.baseSize) - 100);
      if (during === "between-sends") this.o.log.info(`Redis AOF rewrite started between sends (the file grew ${growth}% over its base)`);
      else this.o.log.warn(`Redis AOF rewrite started during a send: the file grew ${growth}% over its base, ${BACKSTOP}x the rule's ${rule.percentage}% (recalls may stall for a moment)`);
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
        .catch((e: unknown) => this.sayOnce("error", `AOF rewrite check failed (tried again every ${CHECK_EVERY_MS / 1000} s, said once): ${(e as Error).message}`, "warn"))
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
      this.sayOnce(`rule ${percentage} ${minSize}`, `Airlock rewrites Redis's AOF between sends by Redis's rule (${percentage}% growth, at least ${minSize} bytes): auto-aof-rewrite-percentage is now 0, the rule kept in ${keys.aofRule()}`);
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
