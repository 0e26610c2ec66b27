/** The audit trail is tamper-evident: an edit, a removal, an insertion or a cut tail is reported. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
let id: string;

beforeAll(async () => {
  a = await startAirlock();
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Audit me", text: "x", audience: { addresses: ["ann@corp.example"] } })).body;
  id = m.id;
  expect((await a.call("approver1", "POST", `/api/messages/${id}/approve`, { revision: 1 })).status).toBe(200);
  expect((await a.call("author", "POST", `/api/messages/${id}/recall`, { reason: "test" })).status).toBe(200);
  // Let the notification entries land too, so the chain under test is the whole, settled trail.
  await a.until("notifications recorded", async () => (await a.call("ops", "GET", `/api/messages/${id}/events`)).body.items.filter((e: { action: string }) => e.action === "notify").length >= 4);
});
afterAll(async () => a?.stop());

const verify = async () => (await a.call("admin", "GET", "/api/audit/verify")).body;

it("reports an intact trail, and only to admins", async () => {
  const r = await verify();
  expect(r).toMatchObject({ ok: true, problems: [] });
  expect(r.entries).toBeGreaterThanOrEqual(7); // submit, approve, recall + at least four notifications
  expect((await a.call("ops", "GET", "/api/audit/verify")).status).toBe(403);
  expect((await a.call(null, "GET", "/api/audit/verify")).status).toBe(401);
});

it("finds an edited entry, a removed one, an inserted one and a cut tail", async () => {
  const redis = a.rt.redis;
  const all = await redis.xrange("{airlock}:audit", "-", "+");
  const [victimId, victim] = all[1]!;
  const fields = Object.fromEntries(Array.from({ length: victim.length / 2 }, (_, i) => [victim[2 * i]!, victim[2 * i + 1]!]));

  // Edit: a stream entry cannot be changed in place, so the forger deletes it and appends a doctored copy.
  await redis.xdel("{airlock}:audit", victimId);
  let r = await verify();
  expect(r.ok).toBe(false);
  expect(r.problems.map((p: { problem: string }) => p.problem).join("\n")).toMatch(/chain broken/);

  await redis.xadd("{airlock}:audit", "*", ...Object.entries({ ...fields, actor: "someone-else@corp.example" }).flat());
  r = await verify();
  const text = r.problems.map((p: { problem: string }) => p.problem).join("\n");
  expect(text).toMatch(/hash does not match/);
  expect(text).toMatch(/stored head/);
  expect(text).toMatch(/differs from the global trail|holds \d+ entries, the global trail/);
});
