/**
 * The order fan-outs go in (scheduler.ts fanoutPriority): a small message released while a large
 * one is fanning out does not wait behind all of the large one's queued batches, and a correction
 * is not queued behind another message's fan-out.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const N = 24_000;

beforeAll(async () => {
  // 24 batch jobs of 1,000 at 2,000 recipients/s over 2 connections: the large fan-out lasts ~12 s.
  a = await startAirlock({ SEND_RATE_PER_SECOND: "2000", RECIPIENTS_PER_TRANSACTION: "50", SMTP_POOL_SIZE: "2" });
  const csv = "email\n" + Array.from({ length: N }, (_, i) => `staff${i}@corp.example`).join("\n");
  expect((await a.call("author", "POST", "/api/audiences?name=everyone", csv, { "content-type": "text/csv" })).status).toBe(201);
});
afterAll(async () => a?.stop());

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;

async function approved(body: object): Promise<{ id: string; messageId: string }> {
  const m = (await a.call("author", "POST", "/api/messages", body)).body;
  for (const u of ["approver1", "approver2"] as const) {
    const r = await a.call(u, "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
    if (m.requiredApprovals === 1) {
      expect(r.status).toBe(200);
      break;
    }
  }
  return m;
}

describe("fan-out order", () => {
  it("a small message and a correction go ahead of a large fan-out's queued batches", async () => {
    const large = await approved({ subject: "Large", text: "To everyone.", audience: { lists: ["everyone"] } });
    await a.until("large fan-out under way", async () => (await get(large.id)).counts.sent >= 500, 30_000);

    const small = await approved({ subject: "Small", text: "To a few.", audience: { addresses: Array.from({ length: 20 }, (_, i) => `few${i}@corp.example`) } });
    const sentSmall = await a.until("small sent", async () => ((await get(small.id)).state === "sent" ? true : undefined), 30_000);
    expect(sentSmall).toBe(true);
    // Without the order, the small message's one batch would wait for the large one's remaining ~20
    // (tried: the large one had 15,950 of 16,000 out by then).
    const largeNow = await get(large.id);
    expect(largeNow.state).toBe("sending");
    expect(largeNow.counts.sent).toBeLessThan(N - 6000);

    // Its correction, too, goes ahead of the large fan-out's remaining batches: by the sink's own
    // clock, every correction transaction began before the large message's last one.
    expect((await a.call("ops", "POST", `/api/messages/${small.id}/recall`, { reason: "sent in error" })).status).toBe(200);
    await a.until("small corrected", async () => ((await get(small.id)).state === "corrected" ? true : undefined), 30_000);
    await a.until("large sent", async () => ((await get(large.id)).state === "sent" ? true : undefined), 60_000);
    const began = (pick: (t: { messageId?: string; inReplyTo?: string }) => boolean) => a.sink.transactions.filter(pick).map((t) => t.startedAt);
    const corrections = began((t) => t.inReplyTo === small.messageId);
    const largeOnes = began((t) => t.messageId === large.messageId);
    expect(corrections.length).toBeGreaterThan(0);
    expect(Math.max(...corrections)).toBeLessThan(Math.max(...largeOnes));
  }, 90_000);
});
