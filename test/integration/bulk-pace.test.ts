/**
 * Bulk work gives way to sends (issue 18, store/bulk-pace.ts): while a fan-out job runs, an
 * upload's chunks and a freeze's slices wait between each other (airlock_bulk_paced_seconds_total
 * counts the waits); with no send running they never wait. Real Redis, real BullMQ jobs, a sink
 * that holds one message's transaction open so that its fan-out job is running for as long as the
 * test needs, not for as long as a race allows. Bulk work also gives way to stops (a recall, an ops
 * pause): a stop held open by the test holds an upload's chunks.
 */
import { Readable } from "node:stream";
import { afterAll, beforeAll, expect, it, vi } from "vitest";
import { AudienceStore } from "../../src/audiences/audience-store.js";
import { parseCsv } from "../../src/audiences/csv.js";
import { BulkPace } from "../../src/store/bulk-pace.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
beforeAll(async () => {
  a = await startAirlock();
});
afterAll(async () => a?.stop());

const ROWS = 5000; // 10 chunks of an upload, 10 slices of a freeze (500 each)
const csv = (tag: string) => "email,name\n" + Array.from({ length: ROWS }, (_, i) => `${tag}${i}@corp.example,P ${i}\n`).join("");

async function pacedSeconds(): Promise<number> {
  const text = await (await fetch(`${a.url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("airlock_bulk_paced_seconds_total "));
  return Number(line!.split(" ")[1]);
}

/** An upload of ROWS rows, then a message submitted to it (frozen), as an author would: the paced seconds after each. */
async function uploadAndSubmit(name: string): Promise<{ afterUpload: number; afterSubmit: number }> {
  const up = await a.call("author", "POST", `/api/audiences?name=${name}`, csv(name), { "content-type": "text/csv" });
  expect(up.status, JSON.stringify(up.body)).toBe(201);
  expect(up.body.size).toBe(ROWS);
  const afterUpload = await pacedSeconds();
  const m = await a.call("author", "POST", "/api/messages", { subject: `To ${name}`, text: "Hello.", audience: { lists: [name] } });
  expect(m.status, JSON.stringify(m.body)).toBe(201);
  expect(m.body.recipientCount).toBe(ROWS);
  return { afterUpload, afterSubmit: await pacedSeconds() };
}

it("an upload and a freeze wait between their slices while a send runs, and never when none does", async () => {
  // No send: nothing waits.
  expect(await uploadAndSubmit("before")).toEqual({ afterUpload: 0, afterSubmit: 0 });

  // A send held open at DATA: its fan-out job stays active.
  let letGo!: () => void;
  const gate = new Promise<void>((r) => (letGo = r));
  let held = 0;
  const sending = (await a.call("author", "POST", "/api/messages", { subject: "Going out", text: "Hello.", audience: { addresses: ["held@corp.example"] } })).body;
  a.sink.behaviour = {
    data: async (_to, raw) => {
      if (!raw.toString("latin1").includes(sending.messageId)) return null;
      held++;
      await gate;
      return null;
    },
  };
  try {
    expect((await a.call("approver1", "POST", `/api/messages/${sending.id}/approve`, { revision: 1 })).status).toBe(200);
    await a.until("the send's transaction held open", () => held === 1);
    expect(await a.rt.scheduler.sendsRunning()).toBe(true);
    // Both paths wait: the upload's chunks, then the freeze's slices.
    const during = await uploadAndSubmit("during");
    expect(during.afterUpload).toBeGreaterThan(0);
    expect(during.afterSubmit).toBeGreaterThan(during.afterUpload);
  } finally {
    letGo();
  }
  await a.until("sent", async () => (await a.call("ops", "GET", `/api/messages/${sending.id}`)).body.state === "sent");
  await a.until("no fan-out job running", async () => !(await a.rt.scheduler.sendsRunning()));
});

it("an upload gives way for at most its budget, whatever its speed: well within the time Node gives a request", async () => {
  const waits: number[] = [];
  // A send runs throughout; the waits are recorded, not slept.
  const pace = new BulkPace({ ratio: 3, sendsRunning: async () => true, sleep: async (ms) => void waits.push(ms) });
  const store = new AudienceStore({ redis: a.rt.redis, clock: a.clock, chunkSize: 100, pace, maxPacingMs: 5 });
  const up = await store.replaceFromRecords("budgeted", "author@corp.example", parseCsv(Readable.from([csv("budgeted")])));
  expect(up.size).toBe(ROWS);
  const total = waits.reduce((x, y) => x + y, 0);
  expect(total).toBeGreaterThanOrEqual(5);
  expect(total - waits.at(-1)!).toBeLessThan(5); // none after the budget was spent
  expect(waits.length).toBeLessThan(ROWS / 100 - 1);

  // A replacement also counts what it shares with the current version, in slices: within the same budget.
  waits.length = 0;
  const again = await store.replaceFromRecords("budgeted", "author@corp.example", parseCsv(Readable.from([csv("budgeted")])));
  expect([again.size, again.added, again.removed]).toEqual([ROWS, 0, 0]);
  const totalAgain = waits.reduce((x, y) => x + y, 0);
  expect(totalAgain).toBeGreaterThanOrEqual(5);
  expect(totalAgain - waits.at(-1)!).toBeLessThan(5);
});

it("a recall and an ops pause run as stops, and an upload waits before each chunk while one runs", async () => {
  const stops = vi.spyOn(BulkPace.prototype, "duringStop");
  try {
    // An hour's hold: recalled while scheduled, whatever the machine's speed (nothing goes out, no send runs).
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Held back", text: "Hello.", audience: { addresses: ["stop@corp.example"] }, holdMinutes: 60 })).body;
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
    const recalled = await a.call("author", "POST", `/api/messages/${m.id}/recall`, { reason: "wrong list" });
    expect(recalled.status, JSON.stringify(recalled.body)).toBe(200);
    expect(recalled.body.state).toBe("recalled");
    expect(stops).toHaveBeenCalledTimes(1);
    // Refused (nothing is sending), but it ran as a stop all the same: a pause is answered first.
    expect((await a.call("ops", "POST", `/api/messages/${m.id}/pause`, { reason: "look first" })).status).toBe(409);
    expect(stops).toHaveBeenCalledTimes(2);

    // The runtime's own pace (the one its uploads use) with a stop held open: no send runs, yet each
    // of the upload's ten chunks waits, for at most 250 ms each.
    const pace = stops.mock.contexts[0] as BulkPace;
    let end!: () => void;
    const held = pace.duringStop(() => new Promise<void>((r) => (end = r)));
    const before = await pacedSeconds();
    const up = await a.call("author", "POST", "/api/audiences?name=stopped", csv("stopped"), { "content-type": "text/csv" });
    expect(up.status, JSON.stringify(up.body)).toBe(201);
    expect(await pacedSeconds()).toBeGreaterThanOrEqual(before + 9 * 0.2); // ten waits of ~250 ms (the timer may fire a little early)
    end();
    await held;
    const after = await pacedSeconds();
    expect((await a.call("author", "POST", "/api/audiences?name=stopped", csv("again"), { "content-type": "text/csv" })).status).toBe(201);
    expect(await pacedSeconds()).toBe(after); // the stop answered: at full speed again
  } finally {
    stops.mockRestore();
  }
});
