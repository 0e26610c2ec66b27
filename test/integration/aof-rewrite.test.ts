/**
 * Redis's AOF rewrite while Redis is quiet (infra/aof-rewrite.ts), against a real redis-server: the
 * keeper takes Redis's rule over, starts BGREWRITEAOF once the file has grown by that rule and only
 * while no send runs and nothing else writes much (or past the backstop), respects an operator's 0, keeps Redis's rule where CONFIG SET
 * is refused, and hands the rule back. The worker processes of a running Airlock take it over.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { pino } from "pino";
import { beforeEach, describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { AofRewriteKeeper, BACKSTOP, QUIET_BYTES, parseAofState } from "../../src/infra/aof-rewrite.js";
import { createRuntime } from "../../src/runtime.js";
import { TestClock } from "../support/airlock.js";
import { keys } from "../../src/store/keys.js";
import { redisForThisFile } from "../support/redis.js";

const ctx = redisForThisFile();

function keeperOn(redis: Redis, sending: { now: boolean }) {
  const said: Array<{ level: "info" | "warn"; msg: string }> = [];
  const rewrites: string[] = [];
  const keeper = new AofRewriteKeeper({
    redis,
    sendsRunning: async () => sending.now,
    log: { info: (msg) => said.push({ level: "info", msg }), warn: (msg) => said.push({ level: "warn", msg }) },
    onRewrite: (when) => rewrites.push(when),
  });
  return { keeper, said, rewrites };
}

async function percentage(): Promise<number> {
  const [, v] = (await ctx.redis.config("GET", "auto-aof-rewrite-percentage")) as [string, string];
  return Number(v);
}

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

/**
 * Writes random 4 kB values (incompressible, so that a rewritten base is their size) until the AOF
 * is `times` its base, in steps of a twentieth of the base (so that it stops close to `times`).
 */
async function growTo(times: number) {
  for (;;) {
    const s = await aof();
    if (s.currentSize >= times * Math.max(1, s.baseSize)) return s;
    const p = ctx.redis.pipeline();
    for (let i = 0; i < Math.max(1, Math.floor(s.baseSize / 20 / 4096)); i++) p.set(`fill:${randomBytes(8).toString("hex")}`, randomBytes(4096));
    await p.exec();
  }
}

/** About `bytes` of data, then a rewrite: the base is then about that size (a fresh AOF's base is almost empty). */
async function baseOf(bytes: number) {
  const p = ctx.redis.pipeline();
  for (let i = 0; i < bytes / 4096; i++) p.set(`fill:${randomBytes(8).toString("hex")}`, randomBytes(4096));
  await p.exec();
  return rewriteNow();
}

/** A rewrite now, so that the base is the data so far (a fresh AOF's base is almost empty). */
async function rewriteNow() {
  const before = (await aof()).rewrites;
  await ctx.redis.bgrewriteaof();
  return aofUntil("rewritten", (s) => s.rewrites > before && !s.busy);
}

beforeEach(async () => {
  // Redis's defaults again, a small minimum size so that a test's few MB count, and no keeper's rule.
  await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "100");
  await ctx.redis.config("SET", "auto-aof-rewrite-min-size", String(64 * 1024));
  await ctx.redis.del(keys.aofRule());
  await aofUntil("idle", (s) => !s.busy);
});

describe("the keeper", () => {
  it("takes Redis's rule over: Redis's percentage 0, the rule kept", async () => {
    const k = keeperOn(ctx.redis, { now: false });
    expect(await k.keeper.tick()).toBe("not-due");
    expect(await percentage()).toBe(0);
    expect(JSON.parse((await ctx.redis.get(keys.aofRule()))!)).toEqual({ percentage: 100, minSize: 64 * 1024 });
    expect(k.said.map((s) => s.msg).join("\n")).toMatch(/while Redis is quiet, by Redis's rule \(100% growth/);
    // An operator's new percentage becomes the rule at the next look.
    await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "50");
    await k.keeper.tick();
    expect(await percentage()).toBe(0);
    expect(JSON.parse((await ctx.redis.get(keys.aofRule()))!).percentage).toBe(50);
  });

  it("waits while a send runs, rewrites once none does and Redis is quiet", async () => {
    const sending = { now: true };
    const k = keeperOn(ctx.redis, sending);
    await k.keeper.tick(); // the rule is ours now: Redis will not rewrite by itself
    await baseOf(1 << 20); // a base of 1 MB, above the 64 kB minimum
    const grown = await growTo(2.5); // 150% over the new base: due, below the backstop
    expect(grown.currentSize).toBeGreaterThan(64 * 1024);
    expect(await k.keeper.tick()).toBe("wait");
    expect(await k.keeper.tick()).toBe("wait"); // nothing written since the last look, but the send runs
    expect((await aof()).rewrites).toBe(grown.rewrites); // Redis did not rewrite by itself either
    sending.now = false;
    expect(await k.keeper.tick()).toBe("rewrite");
    const after = await aofUntil("rewritten by the keeper", (s) => s.rewrites === grown.rewrites + 1 && !s.busy);
    expect(after.baseSize).toBeGreaterThan(grown.baseSize);
    expect(k.rewrites).toEqual(["quiet"]);
    expect(await k.keeper.tick()).toBe("not-due"); // the new base: no longer due
  });

  it("waits while bulk writes run without a send (the AOF grew 1 MB or more since the last look)", async () => {
    const k = keeperOn(ctx.redis, { now: false });
    await k.keeper.tick();
    await baseOf(1 << 20);
    const grown = await growTo(2.5); // 1.5 MB or more written since the keeper's last look
    expect(grown.currentSize - grown.baseSize).toBeGreaterThanOrEqual(QUIET_BYTES);
    expect(await k.keeper.tick()).toBe("wait");
    expect((await aof()).rewrites).toBe(grown.rewrites);
    expect(await k.keeper.tick()).toBe("rewrite"); // nothing written since: quiet
    await aofUntil("rewritten by the keeper", (s) => s.rewrites === grown.rewrites + 1 && !s.busy);
    expect(k.rewrites).toEqual(["quiet"]);
  });

  it("rewrites during a send once the file outgrew the backstop, and says so", async () => {
    const k = keeperOn(ctx.redis, { now: true });
    await k.keeper.tick();
    await baseOf(1 << 20);
    const grown = await growTo(1 + BACKSTOP + 0.1); // 410% over the base, the rule's 100% four times
    expect(await k.keeper.tick()).toBe("rewrite-while-busy");
    await aofUntil("rewritten during the send", (s) => s.rewrites === grown.rewrites + 1 && !s.busy);
    expect(k.rewrites).toEqual(["busy"]);
    expect(k.said.find((s) => s.level === "warn")?.msg).toMatch(/started while sends or bulk writes run/);
  });

  it("leaves an operator's 0 alone: no rule kept, no rewrite", async () => {
    await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "0");
    const k = keeperOn(ctx.redis, { now: false });
    await baseOf(1 << 20);
    const grown = await growTo(3);
    expect(await k.keeper.tick()).toBe("no-rule");
    expect(await ctx.redis.get(keys.aofRule())).toBeNull();
    expect((await aof()).rewrites).toBe(grown.rewrites);
    expect(k.said.map((s) => s.msg).join("\n")).toMatch(/percentage is 0 and no rule was kept/);
  });

  it("keeps Redis's own rule where CONFIG SET is refused (a managed Redis)", async () => {
    await ctx.redis.call("ACL", "SETUSER", "managed", "on", ">managed-pw", "~*", "&*", "+@all", "-config|set");
    const limited = new Redis(ctx.server.url.replace("redis://", "redis://managed:managed-pw@"));
    try {
      const k = keeperOn(limited, { now: false });
      expect(await k.keeper.tick()).toBe("unmanaged");
      expect(await percentage()).toBe(100);
      expect(await ctx.redis.get(keys.aofRule())).toBeNull();
      expect(k.said.find((s) => s.level === "warn")?.msg).toMatch(/refused CONFIG SET.*own rule/);
    } finally {
      limited.disconnect();
    }
  });

  it("hands the rule back (REDIS_AOF_REWRITE=redis)", async () => {
    await ctx.redis.config("SET", "auto-aof-rewrite-percentage", "70");
    await keeperOn(ctx.redis, { now: false }).keeper.tick();
    expect(await percentage()).toBe(0);
    const said: string[] = [];
    await AofRewriteKeeper.handBack(ctx.redis, { info: (m) => said.push(m), warn: (m) => said.push(m) });
    expect(await percentage()).toBe(70);
    expect(await ctx.redis.get(keys.aofRule())).toBeNull();
    expect(said.join("\n")).toMatch(/own rule again \(auto-aof-rewrite-percentage 70\)/);
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
      await until("the rule taken over", async () => (await percentage()) === 0);
      expect(JSON.parse((await ctx.redis.get(keys.aofRule()))!).percentage).toBe(100);
    } finally {
      await first.stop();
    }
    const second = await workersOn({ REDIS_AOF_REWRITE: "redis" });
    try {
      expect(await percentage()).toBe(100);
      expect(await ctx.redis.get(keys.aofRule())).toBeNull();
    } finally {
      await second.stop();
    }
  });
});
