/**
 * Promise 8 for the notifications, end to end: with ALLOWED_RECIPIENT_DOMAINS naming only the
 * audience's domain, the people of the workflow (author, approvers, ops, all at corp.example here)
 * are outside it, and no mail of any kind — approval requests, approval and release notices, the
 * recall notice, the correction — reaches them; the audience gets the original and the correction.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const team = ["ann@corp-eu.example", "ben@corp-eu.example"];

beforeAll(async () => {
  a = await startAirlock({ ALLOWED_RECIPIENT_DOMAINS: "corp-eu.example" });
});
afterAll(async () => a?.stop());

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;

it("sends nothing to an address outside the allowed domains, notifications included", async () => {
  const m = (await a.call("author", "POST", "/api/messages", { subject: "EU only", text: "Hello.", audience: { addresses: team } })).body;
  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  await a.until("sent", async () => (await get(m.id)).state === "sent");
  expect((await a.call("author", "POST", `/api/messages/${m.id}/recall`, { reason: "oops" })).status).toBe(200);
  await a.until("corrected", async () => (await get(m.id)).state === "corrected");
  // The dispatcher read every entry of the trail (the notifications it would have planned are decided by then).
  await a.until("the notification dispatcher caught up", async () => {
    const last = (await a.rt.redis.xrevrange("{airlock}:audit", "+", "-", "COUNT", 1))[0]![0];
    const groups = (await a.rt.redis.xinfo("GROUPS", "{airlock}:audit")) as unknown[][];
    return groups.some((row) => {
      const g = Object.fromEntries(Array.from({ length: row.length / 2 }, (_, i) => [row[2 * i], row[2 * i + 1]]));
      return g["last-delivered-id"] === last && g.pending === 0;
    });
  });
  // And whatever it queued was sent (or dropped) by the notification workers.
  await a.until("the notification queue drained", async () => {
    const c = await a.rt.scheduler.notifications.getJobCounts("waiting", "active", "delayed", "prioritized");
    return Object.values(c).every((n) => n === 0);
  });
  const to = a.sink.received.flatMap((r) => r.to);
  expect(to.filter((addr) => !addr.endsWith("@corp-eu.example"))).toEqual([]);
  expect(a.sink.received.filter((r) => r.mail.messageId === m.messageId).flatMap((r) => r.to).sort()).toEqual(team);
  expect(a.sink.received.filter((r) => r.mail.inReplyTo === m.messageId).flatMap((r) => r.to).sort()).toEqual(team);
});
