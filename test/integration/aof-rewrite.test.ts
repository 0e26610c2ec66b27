/**
 * Redis's AOF rewrite while Redis is quiet (infra/aof-rewrite.ts), against a real redis-server: the
 * keeper takes Redis's rule over (Redis's own raised to twice it plus one, never 0), starts BGREWRITEAOF
 * once the file has grown by that rule and only while no send runs and nothing else writes much,
 * respects an operator's 0, keeps Redis's rule where CONFIG SET is refused, stops when told, and
 * hands the rule back. The worker processes of a running Airlock take it over.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { pino } from "pino";
import { beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { AofRewriteKeeper, QUIET_BYTES, parseAofState, raisedPercentage } from "../../src/infra/aof-rewrite.js";
import { createRuntime } from "../../src/runtime.js";
import { keys } from "../../src/store/keys.js";
import { TestClock } from "../support/airlock.js";
import { redisForThisFile } from "../support/redis.js";

// appendfsync always: Redis writes the file at each command, so the AOF's size in INFO is never
// behind what was written (with everysec it may hold a write back up to 2 s while an fsync runs).
const ctx = redisForThisFile({ appendfsync: "always" });
const MIN_SIZE = 64 * 1024;

function keeperOn(redis: Redis, sending: { now: boolean }, opts: { everyMs?: number } = {}) {
  const said: Array<{ level: "info" | "warn"; msg: string }> = [];
  const rewrites: string[] = [];
  const keeper = new AofRewriteKeeper({
    redis,
    sendsRunning: async () => sending.now,
    log: { info: (msg) => said.push({ level: "info", msg }), warn: (msg) => said.push({ level: "warn", msg }) },
    onRewrite: (start) => rewrites.push(start),
    ...opts,
  });
  return { keeper, said, rewrites };
}

async function percentage(): Promise<number> {
  const [, v] = (await ctx.redis.config("GET", "auto-aof-rewrite-percentage")) as [string, string];
  return Number(v);
}

const kept = async () => JSON.parse((await ctx.redis.get(keys.aofRule())) ?? "null") as { percentage: number; setTo: number } | null;

async function aof() {
  const info = await ctx.redis.info("persistence");
  return { ...parseAofState(info), rewrites: Number(/^aof_rewrites:(\d+)/m.exec(info)![1]) };
}

/** Polls until `check` holds (a rewrite runs in a child process, and finishes when it does). */
async function until<T>(what: string, check: () => Promise<T | false>): Promise<T> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = await check();
    if (v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20)); // Poll interval: a small AOF's rewrite takes milliseconds.
  }
}

const aofUntil = (what: string, ok: (s: Awaited<ReturnType<typeof aof>>) => boolean) =>
  until(`the AOF ${what}`, async () => {
    const s = await aof();
    return ok(s) ? s : false;
  });

/** Writes `bytes` of random 4 kB values (incompressible, so that a rewritten base is their size). */
async function write(bytes: number) {
  const p = ctx.redis.pipeline();
  for (let i = 0; i < Math.max(1, Math.round(bytes / 4096)); i++) p.set(`fill:${randomBytes(8).toString("hex")}`, randomBytes(4096));
  await p.exec();
}

/** Writes until the AOF is `times` its base, in steps of a twentieth of the base (so that it stops close to `times`). */
async function growTo(times: number) {
  for (;;) {
    const s = await aof();
    if (s.currentSize >= times * Math.max(1, s.baseSize)) return s;
    await write(s.baseSize / 20);
  }
}

/**
 * Writes a `share` of the base, and waits until the AOF's size says so: with appendfsync everysec
 * Redis may hold its write to the file back while the last second's fsync runs (up to 2 s).
 */
async function grownBy(share: number) {
  const { baseSize } = await aof();
  await write(baseSize * share);
  return aofUntil(`${share * 100}% over its base`, (s) => s.currentSize >= baseSize * (1 + share * 0.9));
}

/**
 * A rewrite now, and its end. Redis's own rule may have begun one a moment ago (a test's first
 * megabyte over an empty base is far past any percentage): then it is waited for and this one follows.
 */
async function rewriteNow() {
  const before = (await aof()).rewrites;
  await until("a rewrite begun", async () =>
    ctx.redis.bgrewriteaof().then(
      () => true,
      (e: Error) => {
        if (/in progress/i.test(e.message)) return false;
        throw e;
      },
    ),
  );
  return aofUntil("rewritten", (s) => s.rewrites > before && !s.busy);
}

/** About `bytes` of data, then a rewrite: the base is then about that size. */
async function baseOf(bytes: number) {
  await write(bytes);
  return rewriteNow();
}

beforeEach(async () => {
  // Each test from an empty Redis with a fresh base, Redis's default percentage, a small minimum
  // size (so that a test's few MB count) and no rule kept. Redis's own rule off meanwhile, so that
  // its timer starts no rewrite between these steps (a test may have left the file due).
  await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "0");
  await aofUntil("idle", (s) => !s.busy);
  await ctx.redis.flushall();
  await rewriteNow();
  await ctx.redis.config("SET", "auto-aof-rewrite-min-size", String(MIN_SIZE));
  await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "100");
});

describe("the keeper", () => {
  it("takes Redis's rule over: the rule kept, Redis's own raised to the backstop (never 0)", async () => {
    const k = keeperOn(ctx.redis, { now: false });
    expect(await k.keeper.tick()).toBe("not-due");
    expect(await percentage()).toBe(raisedPercentage(100));
    expect(await kept()).toEqual({ percentage: 100, setTo: raisedPercentage(100) });
    expect(k.said.map((s) => s.msg).join("\n")).toMatch(/while Redis is quiet, by Redis's rule \(100% growth.*now 201/);
    // Its own value is recognised: nothing taken again.
    await k.keeper.tick();
    expect(await kept()).toEqual({ percentage: 100, setTo: raisedPercentage(100) });
    // An operator's new percentage (or a new primary's) becomes the rule at the next look.
    await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "50");
    await k.keeper.tick();
    expect(await percentage()).toBe(raisedPercentage(50));
    expect(await kept()).toEqual({ percentage: 50, setTo: raisedPercentage(50) });
  });

  it("waits while a send runs, rewrites once none does and Redis is quiet", async () => {
    const sending = { now: true };
    const k = keeperOn(ctx.redis, sending);
    await k.keeper.tick(); // the rule is kept now; Redis's own is at 201%
    await baseOf(1 << 20); // a base of 1 MB, above the 64 kB minimum
    const grown = await growTo(2.5); // 150% over the base: due by the rule, below Redis's 201%
    expect(grown.currentSize).toBeGreaterThan(MIN_SIZE);
    expect(await k.keeper.tick()).toBe("wait");
    expect(await k.keeper.tick()).toBe("wait"); // nothing written since the last look, but the send runs
    expect((await aof()).rewrites).toBe(grown.rewrites); // Redis did not rewrite by itself either
    sending.now = false;
    expect(await k.keeper.tick()).toBe("rewrite");
    const after = await aofUntil("rewritten by the keeper", (s) => s.rewrites === grown.rewrites + 1 && !s.busy);
    expect(after.baseSize).toBeGreaterThan(grown.baseSize);
    expect(k.rewrites).toEqual(["now"]);
    expect(await k.keeper.tick()).toBe("not-due"); // the new base: no longer due
  });

  it("a rewrite the keeper started loses nothing when Redis is killed after it (promise 5)", async () => {
    const k = keeperOn(ctx.redis, { now: false });
    await k.keeper.tick();
    await baseOf(1 << 20);
    const grown = await growTo(2.5);
    await k.keeper.tick(); // a look at the grown file
    expect(await k.keeper.tick()).toBe("rewrite");
    await aofUntil("rewritten by the keeper", (s) => s.rewrites === grown.rewrites + 1 && !s.busy);
    await write(64 * 1024); // after the rewrite: in the new increment only
    await ctx.redis.set("marker", "after the rewrite");
    const before = await ctx.redis.dbsize();
    await ctx.server.kill();
    await ctx.server.restart();
    expect(await ctx.redis.dbsize()).toBe(before);
    expect(await ctx.redis.get("marker")).toBe("after the rewrite");
  });

  it("waits while bulk writes run without a send (the AOF grew 1 MB or more since the last look)", async () => {
    const k = keeperOn(ctx.redis, { now: false });
    await k.keeper.tick();
    await baseOf(1 << 20);
    await k.keeper.tick(); // a look at the new base
    const grown = await growTo(2.5); // 1.5 MB or more written since that look
    expect(grown.currentSize - grown.baseSize).toBeGreaterThanOrEqual(QUIET_BYTES);
    expect(await k.keeper.tick()).toBe("wait");
    expect((await aof()).rewrites).toBe(grown.rewrites);
    expect(await k.keeper.tick()).toBe("rewrite"); // nothing written since: quiet
    await aofUntil("rewritten by the keeper", (s) => s.rewrites === grown.rewrites + 1 && !s.busy);
    expect(k.rewrites).toEqual(["now"]);
  });

  it("does not take a new base (another keeper's rewrite, a new primary) for a quiet one", async () => {
    await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "5"); // a rule a few writes make due
    const k = keeperOn(ctx.redis, { now: false });
    await k.keeper.tick(); // taken over first: Redis's own at 11% will not rewrite at 7.5%
    await baseOf(1 << 20);
    await grownBy(0.075); // due: 7.5% over the base
    expect(await k.keeper.tick()).toBe("wait"); // a new base since the last look: not known to be quiet
    const first = await rewriteNow(); // someone else's rewrite: a new base
    await grownBy(0.075); // due again, ~80 kB written since the keeper's look
    expect(await k.keeper.tick()).toBe("wait"); // a new base: a first look again
    expect(await k.keeper.tick()).toBe("rewrite");
    await aofUntil("rewritten by the keeper", (s) => s.rewrites === first.rewrites + 1 && !s.busy);
  });

  it("two keepers due at once start one rewrite", async () => {
    const a = keeperOn(ctx.redis, { now: false });
    const b = keeperOn(ctx.redis, { now: false });
    await a.keeper.tick();
    await baseOf(1 << 20);
    const grown = await growTo(2.2);
    await Promise.all([a.keeper.tick(), b.keeper.tick()]); // first looks
    const looks = await Promise.all([a.keeper.tick(), b.keeper.tick()]);
    expect(looks.filter((l) => l === "rewrite")).toHaveLength(1);
    expect(looks.filter((l) => l !== "rewrite")).toEqual(["not-due"]); // refused as in progress, or seen running
    const after = await aofUntil("rewritten once", (s) => s.rewrites > grown.rewrites && !s.busy);
    expect(after.rewrites).toBe(grown.rewrites + 1);
  });

  it("leaves an operator's 0 alone, kept rule or not: no rewrite", async () => {
    const k = keeperOn(ctx.redis, { now: false });
    await k.keeper.tick(); // kept: {100, 201}
    await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "0");
    await baseOf(1 << 20);
    const grown = await growTo(3);
    expect(await k.keeper.tick()).toBe("no-rule");
    expect(await k.keeper.tick()).toBe("no-rule");
    expect(await percentage()).toBe(0);
    expect((await aof()).rewrites).toBe(grown.rewrites);
    expect(k.said.map((s) => s.msg).join("\n")).toMatch(/percentage is 0: no automatic AOF rewrite/);
  });

  it("keeps Redis's own rule where CONFIG SET is refused (an ACL without it)", async () => {
    await ctx.redis.call("ACL", "SETUSER", "managed", "on", ">managed-pw", "~*", "&*", "+@all", "-config|set");
    const limited = new Redis(ctx.server.url.replace("redis://", "redis://managed:managed-pw@"));
    try {
      const k = keeperOn(limited, { now: false });
      expect(await k.keeper.tick()).toBe("unmanaged");
      expect(await percentage()).toBe(100);
      expect(await kept()).toBeNull();
      expect(k.said.find((s) => s.level === "warn")?.msg).toMatch(/refused CONFIG SET.*own rule/);
    } finally {
      limited.disconnect();
    }
  });

  it("gives Redis its rule back where BGREWRITEAOF is refused (an ACL with CONFIG SET but without it)", async () => {
    await ctx.redis.call("ACL", "SETUSER", "nobg", "on", ">nobg-pw", "~*", "&*", "+@all", "-bgrewriteaof");
    const limited = new Redis(ctx.server.url.replace("redis://", "redis://nobg:nobg-pw@"));
    try {
      const k = keeperOn(limited, { now: false });
      await k.keeper.tick();
      expect(await percentage()).toBe(raisedPercentage(100));
      await baseOf(1 << 20);
      await growTo(2.5);
      expect(await k.keeper.tick()).toBe("wait"); // a new base since the last look
      expect(await k.keeper.tick()).toBe("unmanaged");
      expect(await percentage()).toBe(100);
      expect(await kept()).toBeNull();
      expect(k.said.find((s) => s.level === "warn")?.msg).toMatch(/refused BGREWRITEAOF.*own rule/);
    } finally {
      limited.disconnect();
    }
  });

  it("a hand-back between a keeper's reads and its write: the raised value is never taken for the rule", async () => {
    const k = keeperOn(ctx.redis, { now: false });
    await k.keeper.tick(); // kept {100, 201}, Redis at 201
    // A second keeper whose reads are split by a hand-back (a worker started with
    // REDIS_AOF_REWRITE=redis): it reads the percentage (201), then the hand-back gives Redis its 100
    // and deletes the key, then it reads the key (gone).
    const other = new Redis(ctx.server.url);
    const own = new Redis(ctx.server.url);
    try {
      let raced = false;
      const split = new Proxy(own, {
        get(target, prop, receiver) {
          if (prop === "get" && !raced) {
            return async (...args: [string]) => {
              raced = true;
              await AofRewriteKeeper.handBack(other, { info: () => {}, warn: () => {} });
              return target.get(...args);
            };
          }
          const v = Reflect.get(target, prop, receiver);
          return typeof v === "function" ? v.bind(target) : v;
        },
      });
      const racing = keeperOn(split, { now: false });
      expect(await racing.keeper.tick()).toBe("not-due"); // its write found the key changed since its WATCH
      expect(raced).toBe(true);
      expect(await percentage()).toBe(100); // not 403: 201 was not taken for a rule
      expect(await kept()).toBeNull();
      await racing.keeper.tick(); // the next look reads again
      expect(await kept()).toEqual({ percentage: 100, setTo: raisedPercentage(100) });
      expect(await percentage()).toBe(raisedPercentage(100));
    } finally {
      other.disconnect();
      own.disconnect();
    }
  });

  it("stops looking when told", async () => {
    const k = keeperOn(ctx.redis, { now: false }, { everyMs: 20 });
    const stop = k.keeper.start();
    await until("the rule taken over at the start", async () => (await percentage()) === raisedPercentage(100));
    await stop();
    await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "70");
    // Only a wait can show that no look comes: ten of its periods.
    await new Promise((r) => setTimeout(r, 200));
    expect(await percentage()).toBe(70);
  });

  it("hands the rule back (REDIS_AOF_REWRITE=redis), but not over an operator's later change", async () => {
    await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "70");
    await keeperOn(ctx.redis, { now: false }).keeper.tick();
    expect(await percentage()).toBe(raisedPercentage(70));
    const said: string[] = [];
    const log = { info: (m: string) => said.push(m), warn: (m: string) => said.push(m) };
    await AofRewriteKeeper.handBack(ctx.redis, log);
    expect(await percentage()).toBe(70);
    expect(await kept()).toBeNull();
    expect(said.join("\n")).toMatch(/own rule again \(auto-aof-rewrite-percentage 70\)/);

    await keeperOn(ctx.redis, { now: false }).keeper.tick();
    await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "90"); // an operator, since
    await AofRewriteKeeper.handBack(ctx.redis, log);
    expect(await percentage()).toBe(90);
    expect(await kept()).toBeNull();
  });
});

describe("a running Airlock", () => {
  /** This file's Redis, and an Airlock's workers on it with `env`. */
  async function workersOn(env: Record<string, string>) {
    const dir = mkdtempSync(join(tmpdir(), "airlock-aof-"));
    const config = loadConfig({ NODE_ENV: "test", REDIS_URL: ctx.server.url, LOG_LEVEL: "silent", ...env });
    const rt = await createRuntime({ config, clock: new TestClock(), dataDir: dir, logger: pino({ level: "silent" }) });
    await rt.startWorkers();
    return {
      async stop() {
        await rt.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }

  it("its workers take the rule over at start; with REDIS_AOF_REWRITE=redis they hand it back", async () => {
    const first = await workersOn({});
    try {
      // The first look is at the start: no wait for the keeper's period.
      await until("the rule taken over", async () => (await percentage()) === raisedPercentage(100));
      expect(await kept()).toEqual({ percentage: 100, setTo: raisedPercentage(100) });
    } finally {
      await first.stop();
    }
    const second = await workersOn({ REDIS_AOF_REWRITE: "redis" });
    try {
      expect(await percentage()).toBe(100);
      expect(await kept()).toBeNull();
      // The hand-back's connection was used once and is closed, not kept open until the stop
      // (polled: Redis frees a client that quit once its reply is written, not when it is read).
      const clients = () => ctx.redis.client("LIST") as Promise<string>;
      expect(await clients()).toMatch(/name=airlock-api /); // the listing does name the runtime's connections
      await until("the hand-back's connection closed", async () => !/name=airlock-aof-rewrite /.test(await clients()));
    } finally {
      await second.stop();
    }
  });
});
