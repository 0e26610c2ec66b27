/**
 * A fan-out's batch jobs are queued 50 per `addBulk` (scheduler.ts ENQUEUE_CHUNK: one MULTI/EXEC
 * each, so that no enqueue blocks Redis for long). Queuing a large audience is then several steps,
 * and a worker can stop between two (promise 5): the batches queued go out, the sweep finds the
 * fan-out without progress and queues every batch again (the ids dedupe those done), and everyone
 * gets the message exactly once.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
// 51 batches of 1,000: a first enqueue of 50, then one more.
const N = 50_500;

beforeAll(async () => {
  a = await startAirlock({ RECIPIENTS_PER_TRANSACTION: "50" });
  const csv = "email\n" + Array.from({ length: N }, (_, i) => `all${i}@corp.example`).join("\n");
  expect((await a.call("author", "POST", "/api/audiences?name=everyone", csv, { "content-type": "text/csv" })).status).toBe(201);
});
afterAll(async () => a?.stop());

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;

it("an enqueue stopped after its first 50 batches: the sweep queues the rest, and everyone gets it once (promise 5)", async () => {
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Everyone", text: "To all.", audience: { lists: ["everyone"] } })).body;
  // The release's second addBulk for this message fails: the process stopped between the two.
  const fanout = a.rt.scheduler.fanout;
  const real = fanout.addBulk.bind(fanout);
  let enqueues = 0;
  fanout.addBulk = async (jobs) => {
    if ((jobs[0]?.data as { id?: string } | undefined)?.id === m.id && ++enqueues === 2) throw new Error("stopped between two enqueues");
    return real(jobs);
  };
  try {
    for (const u of ["approver1", "approver2"].slice(0, m.requiredApprovals) as Array<"approver1" | "approver2">) {
      expect((await a.call(u, "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
    }
    await a.until("the first 50 batches sent", async () => (await get(m.id)).counts.sent === 50_000, 60_000);
  } finally {
    fanout.addBulk = real;
  }
  expect(enqueues).toBe(2);
  expect((await get(m.id)).state).toBe("sending");
  // No progress for longer than the sweep waits (on Airlock's clock): it queues the batches again.
  a.clock.advance(31_000);
  await a.until("sent", async () => (await get(m.id)).state === "sent", 60_000);
  const got = a.sink.transactions.filter((t) => t.messageId === m.messageId).flatMap((t) => t.to);
  expect(got).toHaveLength(N);
  expect(new Set(got).size).toBe(N);
  expect((await get(m.id)).counts).toMatchObject({ sent: N, failed: 0 });
}, 120_000);
