import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const N = 5000;

beforeAll(async () => {
  // Rate-limited so that the fan-out lasts ~2 s and a recall lands in the middle of it.
  a = await startAirlock({ SEND_RATE_PER_SECOND: "2500", RECIPIENTS_PER_TRANSACTION: "50", SMTP_POOL_SIZE: "4" });
  const csv = "email,name\n" + Array.from({ length: N }, (_, i) => `person${i}@corp.example,Person ${i}`).join("\n");
  const up = await a.call("author", "POST", "/api/audiences?name=all-employees", csv, { "content-type": "text/csv" });
  expect(up.status).toBe(201);
  expect(up.body.size).toBe(N);
});
afterAll(async () => a?.stop());

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;

describe("fan-out", () => {
  it("stops at a recall mid-fan-out: nothing beyond what was handed to SMTP, one threaded correction each", async () => {
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Company-wide", text: "Hello all", audience: { lists: ["all-employees"] } })).body;
    expect(m.requiredApprovals).toBe(2);
    await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
    await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
    await a.until("fan-out under way", async () => (await get(m.id)).counts.sent >= 1000, 30_000);

    const recall = await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "sent in error" });
    expect(recall.status).toBe(200);
    expect(recall.body.state).toBe("correcting");
    const delivered: number = recall.body.delivered;
    expect(delivered).toBeGreaterThanOrEqual(1000);
    expect(delivered).toBeLessThan(N);

    const done = await a.until("corrected", async () => {
      const cur = await get(m.id);
      return cur.state === "corrected" && cur;
    });

    const originals = a.sink.received.filter((r) => r.mail.messageId === m.messageId).flatMap((r) => r.to);
    const corrections = a.sink.received.filter((r) => r.mail.inReplyTo === m.messageId);
    const corrected = corrections.flatMap((r) => r.to);

    // Promise 3: exactly the recipients counted as handed to SMTP when the recall was answered.
    expect(new Set(originals).size).toBe(originals.length);
    expect(originals.length).toBe(delivered);
    expect(done.counts).toMatchObject({ sent: delivered, skipped: N - delivered, corrected: delivered, queued: 0 });
    // Promise 4: each of them gets the correction exactly once, and nobody else does.
    expect(corrected.slice().sort()).toEqual(originals.slice().sort());
    for (const c of corrections) {
      expect(c.mail.subject).toBe("Correction: Company-wide");
      expect(c.mail.headers.get("references")).toBe(m.messageId);
    }
    // The recipients endpoint agrees, page by page.
    const page = (await a.call("ops", "GET", `/api/messages/${m.id}/recipients?status=skipped&limit=10`)).body;
    expect(page.items).toHaveLength(10);
    expect(page.items.every((r: { status: string; correction: unknown }) => r.status === "skipped" && r.correction === null)).toBe(true);
    // Every recipient's recorded state (one byte per index in Redis) matches what the sink got:
    // sent and corrected exactly for those who received the original, skipped for the others.
    const all: Array<{ email: string; status: string; correction: string | null }> = [];
    for (let cursor: string | null = "0"; cursor !== null; ) {
      const p: { items: typeof all; nextCursor: string | null } = (await a.call("ops", "GET", `/api/messages/${m.id}/recipients?limit=1000&cursor=${cursor}`)).body;
      all.push(...p.items);
      cursor = p.nextCursor;
    }
    expect(all).toHaveLength(N);
    const received = new Set(originals);
    for (const r of all) {
      if (received.has(r.email)) expect(r, r.email).toMatchObject({ status: "sent", correction: "sent" });
      else expect(r, r.email).toMatchObject({ status: "skipped", correction: null });
    }
  });

  it("retries a 4xx transaction with backoff and records a 5xx recipient as failed, not retried", async () => {
    const to = ["ok1@corp.example", "ok2@corp.example", "bad@corp.example", "ok3@corp.example"];
    let dataCalls = 0;
    let badRcptAttempts = 0;
    a.sink.behaviour = {
      rcpt: (addr) => (addr === "bad@corp.example" ? (badRcptAttempts++, { code: 550, message: "5.1.1 no such user" }) : null),
      data: (rcpts) => (rcpts.includes("ok1@corp.example") && dataCalls++ < 2 ? { code: 451, message: "4.3.0 try again later" } : null),
    };
    try {
      const m = (await a.call("author", "POST", "/api/messages", { subject: "Retry me", text: "x", audience: { addresses: to } })).body;
      await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
      const done = await a.until("sent", async () => {
        const cur = await get(m.id);
        return cur.state === "sent" && cur;
      });
      expect(dataCalls).toBe(3); // two 451s, then accepted
      expect(done.counts).toMatchObject({ sent: 3, failed: 1, queued: 0 });
      const got = a.sink.received.filter((r) => r.mail.messageId === m.messageId).flatMap((r) => r.to);
      expect(got.sort()).toEqual(["ok1@corp.example", "ok2@corp.example", "ok3@corp.example"]);
      const failed = (await a.call("ops", "GET", `/api/messages/${m.id}/recipients?status=failed`)).body.items;
      expect(failed).toEqual([expect.objectContaining({ email: "bad@corp.example", status: "failed", reply: expect.stringContaining("550") })]);
      // The 550 came back on the first transaction; the address was not offered again after it was recorded.
      expect(badRcptAttempts).toBe(3); // offered once per transaction attempt, never after it was recorded failed
    } finally {
      a.sink.behaviour = {};
    }
  });

  it("retries a transaction cut off after DATA and counts its recipients as possible duplicates", async () => {
    const to = ["d1@corp.example", "d2@corp.example"];
    let drops = 0;
    a.sink.behaviour = { data: (rcpts) => (rcpts.includes("d1@corp.example") && drops++ === 0 ? "drop" : null) };
    try {
      const m = (await a.call("author", "POST", "/api/messages", { subject: "Dropped", text: "x", audience: { addresses: to } })).body;
      await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
      const done = await a.until("sent", async () => {
        const cur = await get(m.id);
        return cur.state === "sent" && cur;
      });
      expect(done).toMatchObject({ possibleDuplicates: 2, counts: { sent: 2, failed: 0 } });
      // The sink did get the first copy: each recipient has it twice, and that is what was counted.
      const copies = a.sink.received.filter((r) => r.mail.messageId === m.messageId).flatMap((r) => r.to);
      expect(copies.sort()).toEqual(["d1@corp.example", "d1@corp.example", "d2@corp.example", "d2@corp.example"]);
      const recipients = (await a.call("ops", "GET", `/api/messages/${m.id}/recipients`)).body.items;
      expect(recipients.every((r: { possibleDuplicate: boolean }) => r.possibleDuplicate)).toBe(true);
    } finally {
      a.sink.behaviour = {};
    }
  });
});
