/**
 * Promise 3, deterministically: the recall placed exactly between a transaction's claim and its
 * SMTP hand-off (the test's transport answers the recall before it passes the transaction on).
 *
 * A claim is the hand-off as far as Airlock's record goes: once claim.lua put recipients in flight,
 * they are handed to SMTP whatever happens next, and a recall counts them as delivered (its answer's
 * `delivered`) and sends them the correction. What the promise rules out, and this test shows, is
 * any recipient that was not claimed before the recall's answer receiving the original: every later
 * claim is refused, nothing else reaches the server, and exactly the recipients the answer counted
 * get the correction, once.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import type { MailTransport } from "../../src/mail/transport.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const team = Array.from({ length: 20 }, (_, i) => `handoff-${String(i).padStart(2, "0")}@corp.example`);
/** The original's Message-ID once submitted: the transport acts on its transactions only. */
let target: string | null = null;
let originalTransactions = 0;
let recall: { status: number; body: any; answeredAt: number; inFlight: string[] } | null = null;

const isOriginal = (raw: Buffer) => target !== null && new RegExp(`^Message-ID: ${target.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}\\r?$`, "mi").test(raw.toString("latin1"));

beforeAll(async () => {
  a = await startAirlock(
    // One job at a time, five recipients a transaction: the second transaction is the one recalled under.
    { RECIPIENTS_PER_TRANSACTION: "5", SMTP_POOL_SIZE: "1" },
    {
      wrapTransport: (real: MailTransport): MailTransport => ({
        async send(envelope, raw) {
          if (isOriginal(raw) && ++originalTransactions === 2) {
            const r = await a.call("ops", "POST", `/api/messages/${messageId}/recall`, { reason: "between a claim and its hand-off" });
            recall = { status: r.status, body: r.body, answeredAt: Date.now(), inFlight: [...envelope.to] };
          }
          return real.send(envelope, raw);
        },
        close: () => real.close(),
      }),
    },
  );
});
afterAll(async () => a?.stop());

let messageId = "";

it("hands nobody the original after the recall's answer but the claimed transaction it counted, and corrects exactly those", async () => {
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Hand-off race", text: "Sent in two transactions, recalled in between.", audience: { addresses: team } })).body;
  messageId = m.id;
  target = m.messageId;
  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  const done = await a.until("corrected", async () => {
    const s = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
    return s.state === "corrected" ? s : undefined;
  });

  expect(recall).not.toBeNull();
  const r = recall!;
  expect(r.status, JSON.stringify(r.body)).toBe(200);
  expect(r.body).toMatchObject({ state: "correcting", delivered: 10 });
  expect(r.inFlight).toHaveLength(5);
  // No third transaction of the original was ever attempted: every claim after the recall was refused.
  expect(originalTransactions).toBe(2);

  const originals = a.sink.received.filter((x) => x.mail.messageId === target);
  const reached = originals.flatMap((x) => x.to);
  expect(reached.sort()).toEqual(team.slice(0, 10).sort()); // each once, and nobody past the ten claimed
  // Received after the answer: only the transaction that was claimed before it, and counted in `delivered`.
  const late = originals.filter((x) => x.at >= r.answeredAt).flatMap((x) => x.to);
  expect(late.sort()).toEqual([...r.inFlight].sort());

  const corrections = a.sink.received.filter((x) => x.mail.inReplyTo === target).flatMap((x) => x.to);
  expect(corrections.sort()).toEqual(team.slice(0, 10).sort());
  expect(done.counts).toMatchObject({ sent: 10, skipped: 10, corrected: 10 });
});
