/** infra/aof-rewrite.ts: Redis's own rewrite rule, applied only while Redis is quiet. */
import { describe, expect, it } from "vitest";
import { AofRewriteKeeper, RETRY_AFTER_FAILURE_MS, aofDecision, parseAofState, parseKeptRule, refused, type AofState } from "../../src/infra/aof-rewrite.js";

const rule = { percentage: 100, minSize: 64 << 20 };
const MB = 1 << 20;
const state = (currentSize: number, baseSize: number, more: Partial<AofState> = {}): AofState => ({ enabled: true, busy: false, currentSize, baseSize, lastRewriteOk: true, ...more });

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
      "# Persistence\r\nloading:0\r\nrdb_bgsave_in_progress:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\naof_last_bgrewrite_status:err\r\naof_current_size:5000\r\naof_base_size:1200\r\nmodule_fork_in_progress:0\r\n";
    expect(parseAofState(info)).toEqual({ enabled: true, busy: false, currentSize: 5000, baseSize: 1200, lastRewriteOk: false });
  });

  it("any fork of Redis's (a rewrite running or scheduled, an RDB save, a module's) is busy", () => {
    for (const f of ["aof_rewrite_in_progress", "aof_rewrite_scheduled", "rdb_bgsave_in_progress", "module_fork_in_progress"]) {
      expect(parseAofState(`aof_enabled:1\r\n${f}:1\r\n`).busy, f).toBe(true);
    }
  });

  it("no AOF fields is no AOF, and no status is no failure", () => {
    expect(parseAofState("aof_enabled:0\r\n")).toEqual({ enabled: false, busy: false, currentSize: 0, baseSize: 0, lastRewriteOk: true });
  });
});

describe("parseKeptRule", () => {
  it("takes only what a keeper wrote", () => {
    expect(parseKeptRule('{"percentage":100,"setTo":201}')).toEqual({ percentage: 100, setTo: 201 });
    for (const bad of ["", "not json", "null", '{"percentage":"x","setTo":201}', '{"percentage":0,"setTo":1}', '{"percentage":100}', '{"percentage":1.5,"setTo":4}']) {
      expect(parseKeptRule(bad), bad).toBeNull();
    }
  });
});

describe("refused", () => {
  it("is an ACL's or a renamed command's answer, not a timeout or a loading Redis", () => {
    for (const m of ["NOPERM User managed has no permissions to run the 'config|set' command", "ERR unknown command 'BGREWRITEAOF'", "ERR unknown subcommand 'SET'"]) expect(refused(new Error(m)), m).toBe(true);
    for (const m of ["Command timed out", "LOADING Redis is loading the dataset in memory", "Connection is closed."]) expect(refused(new Error(m)), m).toBe(false);
  });
});

describe("a failed rewrite", () => {
  /**
   * A keeper on a stand-in for Redis (a fork that fails cannot be made on demand with a real server
   * running as root): its INFO says the AOF is due and how the last rewrite ended; its
   * BGREWRITEAOF answers as told.
   */
  function keeperOnStandIn() {
    const redis = {
      lastOk: true,
      forkFails: false,
      asked: 0,
      kept: null as string | null,
      percentage: 100,
      info: async () => `aof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_last_bgrewrite_status:${redis.lastOk ? "ok" : "err"}\r\naof_current_size:${300 * MB}\r\naof_base_size:${100 * MB}\r\n`,
      config: async () => ["auto-aof-rewrite-percentage", String(redis.percentage), "auto-aof-rewrite-min-size", String(64 * MB)],
      get: async () => redis.kept,
      watch: async () => "OK",
      unwatch: async () => "OK",
      multi() {
        const ops: Array<() => void> = [];
        const tx = {
          set: (_k: string, v: string) => (ops.push(() => void (redis.kept = v)), tx),
          config: (_op: string, _n: string, v: string) => (ops.push(() => void (redis.percentage = Number(v))), tx),
          del: () => (ops.push(() => void (redis.kept = null)), tx),
          exec: async () => ops.map((op) => (op(), [null, "OK"])),
        };
        return tx;
      },
      bgrewriteaof: async () => {
        redis.asked++;
        if (redis.forkFails) throw new Error("ERR Can't execute an AOF background rewriting. Please check the server logs for more information.");
        return "Background append only file rewriting started";
      },
    };
    let now = 0;
    const warnings: string[] = [];
    const keeper = new AofRewriteKeeper({ redis: redis as never, sendsRunning: async () => false, log: { info: () => {}, warn: (m) => warnings.push(m) }, now: () => now });
    return { redis, keeper, warnings, advance: (ms: number) => (now += ms) };
  }

  it("is tried again no sooner than Redis's own limiter would: 1 min, doubling per failure in a row", async () => {
    const k = keeperOnStandIn();
    expect(await k.keeper.tick()).toBe("wait"); // the first look: not known to be quiet
    expect(k.redis.percentage).toBe(201); // taken over: twice the rule, plus one
    expect(await k.keeper.tick()).toBe("rewrite");
    k.redis.lastOk = false; // the child failed
    expect(await k.keeper.tick()).toBe("backing-off");
    expect(k.warnings.join("\n")).toMatch(/failed, 1 in a row \(it ended in an error.*next in 60 s/);
    k.advance(RETRY_AFTER_FAILURE_MS - 1);
    expect(await k.keeper.tick()).toBe("backing-off");
    k.advance(1);
    k.redis.forkFails = true; // now the fork itself fails: an error answer, no rewrite begun
    expect(await k.keeper.tick()).toBe("backing-off");
    expect(k.warnings.at(-1)).toMatch(/failed, 2 in a row \(Redis answered: ERR Can't execute.*next in 120 s/);
    k.advance(2 * RETRY_AFTER_FAILURE_MS - 1);
    expect(await k.keeper.tick()).toBe("backing-off");
    k.advance(1);
    k.redis.forkFails = false;
    expect(await k.keeper.tick()).toBe("rewrite");
    k.redis.lastOk = true; // that one went through: no more waiting
    expect(await k.keeper.tick()).toBe("rewrite");
    expect(k.redis.asked).toBe(4);
    expect(k.warnings).toHaveLength(2); // one per failure, not one per look
  });
});
