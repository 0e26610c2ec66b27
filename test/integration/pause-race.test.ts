/**
 * A resume that commits while a batch job is between its "paused" claim and parking itself in
 * BullMQ's delayed set: the resume's wake finds the job still active and cannot wake it, so the job
 * must notice by itself, or it would sit out PAUSE_RECHECK_MS (30 s) before sending the rest.
 */
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { PAUSE_RECHECK_MS } from "../../src/queues/catalogue.js";
import { FanoutProcessor } from "../../workers/fanout.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const N = 3000;

beforeAll(async () => {
  // Rate-limited so that the fan-out lasts ~3 s and the pause lands in the middle of it.
  a = await startAirlock({ SEND_RATE_PER_SECOND: "1000", RECIPIENTS_PER_TRANSACTION: "50", SMTP_POOL_SIZE: "2" });
  const csv = "email\n" + Array.from({ length: N }, (_, i) => `r${i}@corp.example`).join("\n");
  expect((await a.call("author", "POST", "/api/audiences?name=race-all", csv, { "content-type": "text/csv" })).status).toBe(201);
});
afterAll(async () => {
  vi.restoreAllMocks();
  await a?.stop();
});

it("a job that parks itself just after the resume was committed carries on at once", async () => {
  const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Race", text: "Hello", audience: { lists: ["race-all"] } })).body;
  let raced = 0;
  const process = FanoutProcessor.prototype.process;
  vi.spyOn(FanoutProcessor.prototype, "process").mockImplementation(async function (this: FanoutProcessor, job, lastAttempt) {
    const outcome = await process.call(this, job, lastAttempt);
    if (outcome === "paused" && raced++ === 0) {
      // The worst moment: the claim said "paused", the job is still active, and now the resume commits and wakes.
      expect((await a.call("ops", "POST", `/api/messages/${m.id}/resume`, {})).status).toBe(200);
    }
    return outcome;
  });
  await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, {});
  await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, {});
  await a.until("fan-out under way", async () => (await get(m.id)).counts.sent >= 300);
  expect((await a.call("ops", "POST", `/api/messages/${m.id}/pause`, { reason: "race" })).status).toBe(200);
  await a.until("a job met the pause", async () => raced > 0);
  const resumedAt = Date.now();
  // Everything else would be done in ~3 s at 1,000/s; a stranded job would add PAUSE_RECHECK_MS.
  await a.until("all sent", async () => (await get(m.id)).state === "sent", PAUSE_RECHECK_MS / 2);
  expect(Date.now() - resumedAt).toBeLessThan(PAUSE_RECHECK_MS / 2);
  expect(new Set(a.sink.received.filter((r) => r.mail.messageId === m.messageId).flatMap((r) => r.to)).size).toBe(N);
});
