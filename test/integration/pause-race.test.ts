/**
 * Batch jobs parked by a pause (BullMQ's delayed set, PAUSE_RECHECK_MS = 30 s) must carry on as soon
 * as the pause is lifted: by a resume that commits while a job is between its "paused" claim and
 * parking itself (the resume's wake finds it still active, so the job must notice by itself), and
 * by a recall that has to wait for them to start the correction.
 */
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { Redis } from "ioredis";
import { PAUSE_RECHECK_MS } from "../../src/queues/catalogue.js";
import { keys } from "../../src/store/keys.js";
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
  await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
  await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
  await a.until("fan-out under way", async () => (await get(m.id)).counts.sent >= 300);
  expect((await a.call("ops", "POST", `/api/messages/${m.id}/pause`, { reason: "race" })).status).toBe(200);
  await a.until("a job met the pause", async () => raced > 0);
  const resumedAt = Date.now();
  // Everything else would be done in ~3 s at 1,000/s; a stranded job would add PAUSE_RECHECK_MS.
  await a.until("all sent", async () => (await get(m.id)).state === "sent", PAUSE_RECHECK_MS / 2);
  expect(Date.now() - resumedAt).toBeLessThan(PAUSE_RECHECK_MS / 2);
  expect(new Set(a.sink.received.filter((r) => r.mail.messageId === m.messageId).flatMap((r) => r.to)).size).toBe(N);
  vi.restoreAllMocks();
});

it("a recall that lifts a pause while a crashed transaction's recipient further on in a parked batch is in flight: the batch wakes at once, settles it and starts the correction", async () => {
  const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Recall paused", text: "Hello", audience: { lists: ["race-all"] } })).body;
  await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
  await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
  await a.until("fan-out under way", async () => (await get(m.id)).counts.sent >= 300);
  expect((await a.call("ops", "POST", `/api/messages/${m.id}/pause`, { reason: "hold" })).status).toBe(200);
  await a.until("in-flight transactions settled", async () => (await get(m.id)).counts.inFlight === 0);
  // A transaction a crashed worker left in flight (claimed, never settled) on the last recipient:
  // the recall cannot start the correction while it is in flight, and its batch job is parked. The
  // job, once woken, ends at its first claim (stopped), so that claim must settle the whole batch.
  const redis = new Redis(a.redis.url);
  try {
    await redis.setrange(keys.delivery(m.id), N - 1, "i");
    await redis.hincrby(keys.message(m.id), "queued", -1);
    await redis.hincrby(keys.message(m.id), "inflight", 1);
  } finally {
    redis.disconnect();
  }
  const recall = await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "wrong list" });
  expect(recall.body.state).toBe("correcting");
  const recalledAt = Date.now();
  // Parked, the job holding that recipient would look again only after PAUSE_RECHECK_MS.
  await a.until("corrected", async () => (await get(m.id)).state === "corrected", PAUSE_RECHECK_MS / 2);
  expect(Date.now() - recalledAt).toBeLessThan(PAUSE_RECHECK_MS / 2);
  const done = await get(m.id);
  expect(done.possibleDuplicates).toBe(1); // the leftover counts as delivered, and is counted
  expect(done.counts.corrected).toBe(recall.body.delivered);
});
