/**
 * The freeze in slices (store/recipient-freeze.ts, issue 18): a submit's recipients are copied a few
 * thousand at a time, never in one long Redis command, and what is frozen is always exactly one
 * version of each list — a list replaced mid-copy is noticed and copied again, never mixed. An edit
 * that keeps its audience keeps its frozen recipients without copying them again.
 */
import { describe, expect, it, vi } from "vitest";
import { systemClock } from "../../src/domain/clock.js";
import { approvalLadder } from "../../src/domain/policies.js";
import { keys } from "../../src/store/keys.js";
import { MessageStore } from "../../src/store/message-store.js";
import { BulkPace } from "../../src/store/bulk-pace.js";
import { AudienceChangedError, FREEZE_SLICE, RecipientFreeze } from "../../src/store/recipient-freeze.js";
import { startAirlock } from "../support/airlock.js";
import { redisForThisFile } from "../support/redis.js";

const ctx = redisForThisFile();
const ladder = approvalLadder({ approvalsRequired: 1, largeAudienceThreshold: 1000, largeAudienceApprovals: 2 });
const person = (prefix: string, i: number) => `${prefix}${String(i).padStart(6, "0")}@corp.example`;

/** Writes a list as an upload leaves it: its sorted set and its catalogue entry at `version`. */
async function putList(name: string, members: string[], version: number): Promise<void> {
  const r = ctx.redis;
  await r.del(keys.audience(name));
  for (let i = 0; i < members.length; i += 1000) await r.zadd(keys.audience(name), ...members.slice(i, i + 1000).flatMap((m) => [0, m]));
  await r.hset(keys.audiences(), name, JSON.stringify({ name, size: members.length, updatedAt: Date.now(), by: "t@corp.example", owner: "t@corp.example", version }));
}

/**
 * Runs `before(n)` ahead of the n-th slice call (1-based) of the freezes on `redis` (to replace a
 * list between two slices); answers the function that puts the real command back.
 */
function onSlices(redis: unknown, before: (n: number) => Promise<void> | void): () => void {
  const r = redis as Record<string, (...a: unknown[]) => Promise<string>>;
  const real = r.airlockFreezeSlice!;
  let calls = 0;
  r.airlockFreezeSlice = async (...args: unknown[]) => {
    await before(++calls);
    return real.apply(redis, args);
  };
  return () => void (r.airlockFreezeSlice = real);
}

const fields = (lists: string[], addresses: string[] = []) => ({
  digest: "0".repeat(64), markdown: "", template: "", subject: "Freeze", text: "x", html: null, from: "comms@corp.example",
  audience: { lists, addresses }, toHeader: "All <all@corp.example>", author: "a@corp.example", holdSeconds: 60, sendAt: null,
  expiresAt: Date.now() + 3600_000, messageId: "<freeze@corp.example>",
});

describe("the freeze in slices", () => {
  it("freezes exactly the union of the lists and the addresses, slice by slice", async () => {
    const store = new MessageStore(ctx.redis, systemClock);
    const part = FREEZE_SLICE / 4;
    const a = Array.from({ length: 2 * FREEZE_SLICE + part }, (_, i) => person("a", i));
    const b = Array.from({ length: FREEZE_SLICE + 10 }, (_, i) => person("a", i + 2 * FREEZE_SLICE)); // overlaps a's last `part`
    await putList("union-a", a, 3);
    await putList("union-b", b, 1);
    let slices = 0;
    const restore = onSlices(ctx.redis, (n) => void (slices = n));
    const answer = await store.submit("create", "101", "a@corp.example", fields(["union-a", "union-b"], ["x@corp.example", person("a", 0)]), ladder, Date.now(), { maxRevisions: 5 });
    expect(answer).toMatchObject({ ok: true, recipientCount: a.length + FREEZE_SLICE + 10 - part + 1 });
    // a: 3 full slices (the third short), b: 2 (the second short): never one command for a whole list.
    expect(slices).toBe(5);
    restore();
    const frozen = await ctx.redis.zrange(keys.recipients("101"), "0", "-1");
    expect(frozen).toEqual([...new Set([...a, ...b, "x@corp.example"])].sort());
    const snapshot = await store.revisionSnapshot("101", 1);
    expect(snapshot?.audienceCounts).toEqual([
      { name: "union-a", count: a.length, version: 3 },
      { name: "union-b", count: b.length, version: 1 },
    ]);
    expect(await ctx.redis.keys(`${keys.recipients("101")}:next:*`)).toEqual([]); // no scratch set left
    // The scratch set's expiry (for a freeze abandoned mid-way) did not come along with the rename.
    expect(await ctx.redis.pttl(keys.recipients("101"))).toBe(-1);
  });

  it("a list replaced between two slices: the freeze stops, leaves nothing, and a submit with the old copy is refused", async () => {
    const store = new MessageStore(ctx.redis, systemClock);
    await putList("moving", Array.from({ length: 3 * FREEZE_SLICE }, (_, i) => person("m", i)), 1);
    const restore = onSlices(ctx.redis, (n) => (n === 2 ? putList("moving", Array.from({ length: 10 }, (_, i) => person("n", i)), 2) : undefined));
    await expect(store.freeze.freeze("102", ["moving"], [])).rejects.toBeInstanceOf(AudienceChangedError);
    restore();
    expect(await ctx.redis.keys(`${keys.recipients("102")}*`)).toEqual([]);

    // A copy of version 2, submitted after the list moved on to version 3: refused, nothing written.
    const frozen = await store.freeze.freeze("103", ["moving"], []);
    await putList("moving", [person("z", 1)], 3);
    const refused = await store.submit("create", "103", "a@corp.example", fields(["moving"]), ladder, Date.now(), { maxRevisions: 5, frozen });
    expect(refused).toMatchObject({ ok: false, err: "audience_changed", audience: "moving" });
    expect(await ctx.redis.exists(keys.message("103"), keys.recipients("103"), frozen.scratch)).toBe(0);
  });
});

describe("submits and edits through the service", () => {
  it("a list replaced during the freeze is frozen again from its new version, whole; an edit keeping the audience copies nothing", async () => {
    const a = await startAirlock();
    try {
      const csv = (prefix: string, n: number) => "email\n" + Array.from({ length: n }, (_, i) => person(prefix, i)).join("\n");
      expect((await a.call("author", "POST", "/api/audiences?name=staff", csv("old", 2 * FREEZE_SLICE + 1), { "content-type": "text/csv" })).status).toBe(201);
      // Between the first and the second slice of the first freeze, the list is replaced.
      onSlices(a.rt.redis, async (n) => {
        if (n === 2) expect((await a.call("author", "POST", "/api/audiences?name=staff", csv("new", FREEZE_SLICE + 7), { "content-type": "text/csv" })).status).toBe(201);
      });
      const m = await a.call("author", "POST", "/api/messages", { subject: "Frozen", text: "x", audience: { lists: ["staff"] } });
      expect(m.status).toBe(201);
      expect(m.body.recipientCount).toBe(FREEZE_SLICE + 7);
      const frozen = await a.rt.redis.zrange(keys.recipients(m.body.id), "0", "-1");
      expect(frozen.every((e) => e.startsWith("new"))).toBe(true);
      expect(await a.rt.redis.pttl(keys.recipients(m.body.id))).toBe(-1);

      // An edit of the text only: the same recipients, not copied again.
      const freeze = vi.spyOn(a.rt.store.freeze, "freeze");
      const edited = await a.call("author", "PUT", `/api/messages/${m.body.id}`, { subject: "Frozen, edited", text: "y", audience: { lists: ["staff"] } });
      expect(edited.status).toBe(200);
      expect(edited.body).toMatchObject({ revision: 2, recipientCount: FREEZE_SLICE + 7 });
      expect(freeze).not.toHaveBeenCalled();
      expect(await a.rt.redis.zrange(keys.recipients(m.body.id), "0", "-1")).toEqual(frozen);
      // An edit of the explicit addresses only: applied to the kept set, nothing copied (issue 18).
      const listed = person("new", 3);
      const again = await a.call("author", "PUT", `/api/messages/${m.body.id}`, {
        subject: "Frozen, edited",
        text: "y",
        audience: { lists: ["staff"], addresses: ["extra@corp.example", "other@corp.example", listed] },
      });
      expect(again.body).toMatchObject({ revision: 3, recipientCount: FREEZE_SLICE + 9 });
      expect(freeze).not.toHaveBeenCalled();
      // Dropping an address the list has keeps it; dropping one only named explicitly removes it.
      const dropped = await a.call("author", "PUT", `/api/messages/${m.body.id}`, { subject: "Frozen, edited", text: "y", audience: { lists: ["staff"], addresses: ["other@corp.example"] } });
      expect(dropped.body).toMatchObject({ revision: 4, recipientCount: FREEZE_SLICE + 8 });
      const after = await a.rt.redis.zrange(keys.recipients(m.body.id), "0", "-1");
      expect(after).toEqual([...frozen, "other@corp.example"].sort());
      expect(await a.rt.redis.pttl(keys.recipients(m.body.id))).toBe(-1);
      expect(freeze).not.toHaveBeenCalled();
      // The same recipients a fresh freeze gives (what the edit's new revision names).
      const fresh = await a.call("author", "POST", "/api/messages", { subject: "Fresh", text: "x", audience: { lists: ["staff"], addresses: ["other@corp.example"] } });
      expect(await a.rt.redis.zrange(keys.recipients(fresh.body.id), "0", "-1")).toEqual(after);
      // An edit naming another list freezes again.
      expect((await a.call("author", "POST", "/api/audiences?name=more", csv("more", 3), { "content-type": "text/csv" })).status).toBe(201);
      const relisted = await a.call("author", "PUT", `/api/messages/${m.body.id}`, { subject: "Frozen, edited", text: "y", audience: { lists: ["staff", "more"] } });
      expect(relisted.body).toMatchObject({ revision: 5, recipientCount: FREEZE_SLICE + 10 });
      expect(freeze).toHaveBeenCalledTimes(2); // the fresh message's and this one's
    } finally {
      await a.stop();
    }
  });
});

describe("a freeze while a send runs", () => {
  it("gives way between its slices, for at most its budget, and freezes the same set", async () => {
    const members = Array.from({ length: FREEZE_SLICE * 6 }, (_, i) => person("paced", i));
    await putList("paced", members, 1);
    const waits: number[] = [];
    // A send runs throughout; the waits are recorded, not slept.
    const pace = new BulkPace({ ratio: 3, sendsRunning: async () => true, sleep: async (ms) => void waits.push(ms) });
    const frozen = await new RecipientFreeze(ctx.redis, pace, 3).freeze("paced-msg", ["paced"], []);
    expect(await ctx.redis.zcard(frozen.scratch)).toBe(members.length);
    const total = waits.reduce((x, y) => x + y, 0);
    expect(total).toBeGreaterThanOrEqual(3);
    expect(total - waits.at(-1)!).toBeLessThan(3); // none after the budget was spent
    expect(waits.length).toBeLessThan(5); // 6 slices: 5 gaps
    await ctx.redis.del(frozen.scratch);
  });
});
