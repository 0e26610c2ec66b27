/**
 * The keyed seals of the audit trail (audit/sealer.ts, audit/verify.ts): someone who can write to
 * Redis but does not hold AUDIT_SECRET can recompute the hash chain, never the seals.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditLog } from "../../src/audit/audit-log.js";
import { entryHash, flatFields } from "../../src/audit/chain.js";
import { AuditSealer } from "../../src/audit/sealer.js";
import { verifyAudit } from "../../src/audit/verify.js";
import { systemClock } from "../../src/domain/clock.js";
import { keys } from "../../src/store/keys.js";
import { startAirlock, USERS, type TestAirlock } from "../support/airlock.js";
import { dashboardClient } from "../support/dashboard-client.js";
import { redisForThisFile } from "../support/redis.js";
import { capturingLogger } from "../support/logger.js";


/**
 * What a forger with write access to Redis can do: rebuild the global stream with the same entry
 * ids, `edit` applied, and every hash recomputed from there on, the head and each message's own
 * stream included. In one script, as a careful forger would: the service keeps writing entries
 * (notifications), and a rewrite interleaved with them would show as a gap. Retried when an entry
 * was appended between the read and the rewrite.
 */
const REWRITE = `
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if not last or last[1] ~= ARGV[1] then return 0 end
local plan = cjson.decode(ARGV[2])
redis.call('DEL', KEYS[1])
for _, e in ipairs(plan.global) do redis.call('XADD', KEYS[1], e[1], unpack(e[2])) end
redis.call('SET', KEYS[2], plan.head)
for i, m in ipairs(plan.messages) do
  redis.call('DEL', KEYS[2 + i])
  for _, e in ipairs(m) do redis.call('XADD', KEYS[2 + i], e[1], unpack(e[2])) end
end
return 1
`;

async function rewriteTrail(redis: TestAirlock["rt"]["redis"], edit: (f: Record<string, string>, i: number) => Record<string, string>): Promise<void> {
  for (;;) {
    const all = await redis.xrange(keys.auditAll(), "-", "+");
    let prev = "";
    const global: Array<[string, string[]]> = [];
    const byMessage = new Map<string, string[][]>();
    for (const [i, [id, flat]] of all.entries()) {
      const f = edit(flatFields(flat), i);
      f.prev = prev;
      f.hash = entryHash(prev, f);
      prev = f.hash;
      global.push([id, Object.entries(f).flat()]);
      if (f.message) byMessage.set(f.message, [...(byMessage.get(f.message) ?? []), Object.entries(f).flat()]);
    }
    // Each message's own stream, entry for entry, under its own ids.
    const names = [...byMessage.keys()];
    const messages = await Promise.all(
      names.map(async (name) => (await redis.xrange(keys.audit(name), "-", "+")).map(([id], i) => [id, byMessage.get(name)![i]!] as [string, string[]])),
    );
    const plan = JSON.stringify({ global, head: prev, messages });
    const done = await redis.eval(REWRITE, 2 + names.length, keys.auditAll(), keys.auditHead(), ...names.map(keys.audit), all.at(-1)![0], plan);
    if (done === 1) return;
  }
}

describe("a running service", () => {
  let a: TestAirlock;
  const log = capturingLogger();
  const verify = (extra: { anchor?: string } = {}) => verifyAudit(a.rt.redis, { secret: a.rt.auditSecret, ...extra });
  const allSealed = () => a.until("every entry sealed", async () => {
    const r = await verify();
    return r.unsealed === 0 && r.sealed === r.entries ? r : undefined;
  });

  beforeAll(async () => {
    a = await startAirlock({ LINK_SECRET: "seal-test-link-secret-0123456789abcdef" }, { logger: log.logger });
  });
  afterAll(async () => a?.stop());

  it("records the settings it started with (no secret in them) and sign-ins, and seals everything", async () => {
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Sealed", text: "x", audience: { addresses: ["ann@corp.example"] } })).body;
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
    const browser = await dashboardClient(() => a.url).signIn("ops");
    expect((await browser.post("/signout", { _csrf: browser.csrf })).status).toBe(303);

    const r = await allSealed();
    expect(r).toMatchObject({ ok: true, problems: [] });
    const entries = (await a.rt.redis.xrange(keys.auditAll(), "-", "+")).map(([, flat]) => flatFields(flat));
    const settings = entries.find((e) => e.action === "settings")!;
    expect(settings.actor).toBe("airlock");
    expect(JSON.parse(settings.detail!).settings).toMatchObject({ LINK_SECRET: "set", HOLD_MIN_SECONDS: 1 });
    expect(settings.detail).not.toContain("seal-test-link-secret");
    expect(settings.detail).not.toContain(a.rt.auditSecret);
    expect(entries.filter((e) => e.action === "signIn" || e.action === "signOut").map((e) => [e.action, e.actor])).toEqual([
      ["signIn", USERS.ops.email],
      ["signOut", USERS.ops.email],
    ]);
    expect(r.sealHead).toMatch(/^\d+-\d+ [0-9a-f]{64}$/);
  });

  it("finds an entry edited by someone who recomputed the whole hash chain, and stops sealing", async () => {
    const anchor = (await allSealed()).sealHead!;
    const before = await a.rt.redis.xrange(keys.auditAll(), "-", "+");
    const victim = before.findIndex(([, flat]) => flatFields(flat).action === "approve");
    expect(victim).toBeGreaterThanOrEqual(0);
    await rewriteTrail(a.rt.redis, (f, i) => (i === victim ? { ...f, actor: "someone-else@corp.example" } : f));

    const r = await verify({ anchor });
    const texts = r.problems.map((p) => p.problem).join("\n");
    expect(texts).not.toMatch(/hash does not match|chain broken|stored head|differs from the global/); // the hash chain alone is fooled
    expect(r.ok).toBe(false);
    expect(r.problems).toContainEqual(expect.objectContaining({ entryId: before[victim]![0], problem: expect.stringMatching(/seal does not match/) }));
    // A new entry makes the sealer look at the head again: it no longer verifies, so nothing more is sealed.
    await a.call("author", "POST", "/api/messages", { subject: "After the forgery", text: "x", audience: { addresses: ["bob@corp.example"] } });
    await a.until("the sealer refuses", () => log.lines.some((l) => l.level >= 50 && /audit sealing stopped/.test(l.msg)));
    expect((await verify()).unsealed).toBeGreaterThan(0);
  });

  it("cannot tell a trail re-sealed from scratch without an anchor, and can with one", async () => {
    expect((await verify()).ok).toBe(false); // still the forged trail of the test before
    // The forger removes every seal too: the sealer then takes the trail for one never sealed (the
    // first start after an upgrade looks the same) and seals the forgery.
    const noted = (await a.rt.redis.get(keys.auditSealHead()))!;
    await a.rt.redis.del(keys.auditSeals(), keys.auditSealHead());
    await a.call("author", "POST", "/api/messages", { subject: "Wake the sealer", text: "x", audience: { addresses: ["cy@corp.example"] } });
    const resealed = await allSealed();
    expect(resealed.ok).toBe(true);
    // A seal head noted before (the service logs one a minute) is no longer in the trail.
    const anchored = await verify({ anchor: noted });
    expect(anchored.ok).toBe(false);
    expect(anchored.problems.map((p) => p.problem).join("\n")).toMatch(/the anchor .* is not in the trail/);
    expect(log.lines.some((l) => /audit trail sealed up to \d+-\d+ [0-9a-f]{64}/.test(l.msg))).toBe(true);
  });
});

describe("the sealer on its own", () => {
  const ctx = redisForThisFile();
  const secret = "unit-seal-secret-0123456789abcdef0123";

  it("seals each entry once when several processes race, and the trail verifies", async () => {
    const audit = new AuditLog(ctx.redis, systemClock);
    const log = capturingLogger();
    const sealers = [0, 1, 2].map(() => new AuditSealer({ redis: ctx.redis, reader: ctx.redis.duplicate(), secret, logger: log.logger }));
    for (let round = 0; round < 5; round++) {
      await Promise.all(Array.from({ length: 40 }, (_, i) => audit.append(`user${i}@corp.example`, "signIn", { round })));
      // Racing on the same head: the compare-and-set lets one of them write each page.
      await Promise.all(sealers.map((s) => s.sealOnce()));
      while ((await Promise.all(sealers.map((s) => s.sealOnce()))).some((n) => n > 0));
    }
    const r = await verifyAudit(ctx.redis, { secret });
    expect(r).toMatchObject({ ok: true, entries: 200, sealed: 200, unsealed: 0, problems: [] });
    expect(await ctx.redis.hlen(keys.auditSeals())).toBe(200);
    expect(log.lines.filter((l) => l.level >= 50)).toEqual([]);
    await Promise.all(sealers.map((s) => s.stop()));
  });

  it("reports an entry never sealed once it is older than the grace, and a removed sealed entry", async () => {
    await new AuditLog(ctx.redis, systemClock).append("late@corp.example", "signIn", {});
    const young = await verifyAudit(ctx.redis, { secret });
    expect(young).toMatchObject({ ok: true, unsealed: 1 });
    const old = await verifyAudit(ctx.redis, { secret, now: Date.now() + 120_000 });
    expect(old.ok).toBe(false);
    expect(old.problems.map((p) => p.problem).join("\n")).toMatch(/not sealed \d+ s after it was written/);

    const [firstId] = (await ctx.redis.xrange(keys.auditAll(), "-", "+", "COUNT", 1))[0]!;
    await ctx.redis.xdel(keys.auditAll(), firstId);
    const cut = await verifyAudit(ctx.redis, { secret });
    expect(cut.ok).toBe(false);
    expect(cut.problems.map((p) => p.problem).join("\n")).toMatch(/200 seals were stored, the trail holds 199 sealed entries/);
  });
});
