/** infra/aof-rewrite.ts: Redis's own rewrite rule, applied only while Redis is quiet. */
import { describe, expect, it } from "vitest";
import { AofRewriteKeeper, RETRY_AFTER_FAILURE_MS, aofDecision, parseAofState, type AofState } from "../../src/infra/aof-rewrite.js";

const rule = { percentage: 100, minSize: 64 << 20 };
const MB = 1 << 20;
const state = (currentSize: number, baseSize: number, more: Partial<AofState> = {}): AofState => ({ enabled: true, busy: false, currentSize, baseSize, failures: 0, ...more });

describe("aofDecision", () => {
  it("is not due below Redis's growth or minimum size, quiet or not", () => {
    for (const quiet of [false, true]) {
      expect(aofDecision(state(150 * MB, 100 * MB), rule, quiet)).toBe("not-due"); // 50% growth
      expect(aofDecision(state(199 * MB, 100 * MB), rule, quiet)).toBe("not-due"); // 99%
      expect(aofDecision(state(60 * MB, 10 * MB), rule, quiet)).toBe("not-due"); // 500%, below 64 MB
      expect(aofDecision(state(64 * MB, 0), rule, quiet)).toBe("not-due"); // the minimum itself: Redis wants more
    }
  });

  it("rewrites when due and Redis is quiet, waits while it is not", () => {
    expect(aofDecision(state(200 * MB, 100 * MB), rule, true)).toBe("rewrite"); // exactly 100%
    expect(aofDecision(state(200 * MB, 100 * MB), rule, false)).toBe("wait");
    expect(aofDecision(state(900 * MB, 100 * MB), rule, false)).toBe("wait"); // however far: Redis's own (raised) rule is the backstop
    expect(aofDecision(state(150 * MB, 100 * MB), { percentage: 50, minSize: 0 }, true)).toBe("rewrite");
  });

  it("counts a missing base as one byte, as Redis does", () => {
    expect(aofDecision(state(65 * MB, 0), rule, true)).toBe("rewrite");
  });

  it("never asks while a fork runs, without an AOF, or with no rule", () => {
    expect(aofDecision(state(900 * MB, 100 * MB, { busy: true }), rule, true)).toBe("not-due");
    expect(aofDecision(state(900 * MB, 100 * MB, { enabled: false }), rule, true)).toBe("not-due");
    expect(aofDecision(state(900 * MB, 100 * MB), { percentage: 0, minSize: 0 }, true)).toBe("not-due");
  });
});

describe("parseAofState", () => {
  it("reads INFO persistence", () => {
    const info =
      "# Persistence\r\nloading:0\r\nrdb_bgsave_in_progress:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\naof_rewrites_consecutive_failures:2\r\naof_current_size:5000\r\naof_base_size:1200\r\nmodule_fork_in_progress:0\r\n";
    expect(parseAofState(info)).toEqual({ enabled: true, busy: false, currentSize: 5000, baseSize: 1200, failures: 2 });
  });

  it("any fork of Redis's (a rewrite running or scheduled, an RDB save, a module's) is busy", () => {
    for (const f of ["aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress", "module_fork_in_progress"]) {
      expect(parseAofState(`aof_enabled:1\r\n${f}:1\r\n`).busy, f).toBe(true);
    }
  });

  it("no AOF fields is no AOF (and Redis 6.2's INFO, without the failure count, is no failure)", () => {
    expect(parseAofState("aof_enabled:0\r\n")).toEqual({ enabled: false, busy: false, currentSize: 0, baseSize: 0, failures: 0 });
  });
});

describe("a failed rewrite", () => {
  /**
   * A keeper on a stand-in for Redis (a fork that fails cannot be made on demand with a real
   * server running as root): its INFO says the AOF is due, and how many rewrites failed in a row.
   */
  function keeperWithFailures() {
    const redis = {
      failures: 0,
      asked: 0,
      kept: null as string | null,
      percentage: 100,
      info: async () => `aof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_current_size:${300 * MB}\r\naof_base_size:${100 * MB}\r\naof_rewrites_consecutive_failures:${redis.failures}\r\n`,
      config: async (op: string, _name: string, value?: string) => {
        if (op === "SET") redis.percentage = Number(value);
        return ["auto-aof-rewrite-percentage", String(redis.percentage), "auto-aof-rewrite-min-size", String(64 * MB)];
      },
      get: async () => redis.kept,
      set: async (_k: string, v: string) => void (redis.kept = v),
      bgrewriteaof: async () => {
        redis.asked++;
        return "Background append only file rewriting started";
      },
    };
    let now = 0;
    const warnings: string[] = [];
    const keeper = new AofRewriteKeeper({ redis: redis as never, sendsRunning: async () => false, log: { info: () => {}, warn: (m) => warnings.push(m) }, now: () => now });
    return { redis, keeper, warnings, advance: (ms: number) => (now += ms) };
  }

  it("is tried again no sooner than Redis's own limiter would: 1 min, doubling per failure in a row", async () => {
    const k = keeperWithFailures();
    expect(await k.keeper.tick()).toBe("wait"); // the first look: not known to be quiet
    expect(await k.keeper.tick()).toBe("rewrite");
    k.redis.failures = 1;
    expect(await k.keeper.tick()).toBe("backing-off");
    expect(k.warnings.join("\n")).toMatch(/failed \(1 in a row.*next in 60 s/);
    k.advance(RETRY_AFTER_FAILURE_MS - 1);
    expect(await k.keeper.tick()).toBe("backing-off");
    k.advance(1);
    expect(await k.keeper.tick()).toBe("rewrite");
    k.redis.failures = 2;
    expect(await k.keeper.tick()).toBe("backing-off");
    k.advance(2 * RETRY_AFTER_FAILURE_MS - 1);
    expect(await k.keeper.tick()).toBe("backing-off");
    k.advance(1);
    expect(await k.keeper.tick()).toBe("rewrite");
    expect(k.redis.asked).toBe(3);
    k.redis.failures = 0; // one went through: no more waiting
    expect(await k.keeper.tick()).toBe("rewrite");
    expect(k.warnings).toHaveLength(2); // one per failure seen, not one per look
  });
});
