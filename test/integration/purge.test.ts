/**
 * Recall into the mailboxes (SPEC "Recall into the mailboxes", promise 10), end to end against a
 * real Dovecot (test/support/dovecot.ts): what the SMTP sink accepts is stored in the recipients'
 * mailboxes (IMAP APPEND, before the sink answers, so `sent` means "in the mailbox"), next to other
 * mail. A recall mid-fan-out removes every delivered copy through the IMAP connector and nothing
 * else, records each recipient's purge, and the standard correction tells each recipient that
 * the message was removed from their mailbox.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ImapPurgeConnector } from "../../src/purge/imap-connector.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";
import { startDovecot, type Dovecot } from "../support/dovecot.js";

const N = 2000;
const STAFF = Array.from({ length: N }, (_, i) => `staff${i}@corp.example`);
const OTHER_ID = (address: string) => `<other.${address.replace("@", ".at.")}@mail.corp.example>`;

let a: TestAirlock;
let dovecot: Dovecot;

/** Runs `work` over `items`, `width` at a time (Dovecot logins are per mailbox). */
async function inParallel<T>(items: readonly T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

beforeAll(async () => {
  dovecot = await startDovecot({ users: STAFF });
  // Other mail in every mailbox: the purge must leave it there.
  await inParallel(STAFF, 16, (u) => dovecot.append(u, `From: hr@corp.example\r\nTo: ${u}\r\nSubject: Payslip\r\nMessage-ID: ${OTHER_ID(u)}\r\n\r\nYour payslip.\r\n`));
  const connector = new ImapPurgeConnector({ host: dovecot.host, port: dovecot.port, tls: "none", adminUser: dovecot.adminUser, adminPassword: dovecot.adminPassword, connections: 8 });
  a = await startAirlock(
    // Paced so that the recall lands mid-fan-out (the appends below pace it too).
    { SEND_RATE_PER_SECOND: "400", RECIPIENTS_PER_TRANSACTION: "50", SMTP_POOL_SIZE: "4" },
    // Not found is tried again for a minute; the correction may wait two for the purge's answers.
    { purge: { connector, timing: { concurrency: 8, ratePerSecond: 10_000, retryForMs: 60_000, retryEveryMs: 1000 }, correctionWaitMs: 120_000 } },
  );
  // Delivery: the sink stores each accepted mail in its recipients' INBOX before it says 250
  // (the staff's: approvers and ops have no mailbox here, their notifications stay in the sink).
  const mailboxes = new Set(STAFF);
  a.sink.behaviour.data = async (to, raw) => {
    await inParallel(to.filter((u) => mailboxes.has(u)), 10, (u) => dovecot.append(u, raw.toString("latin1")));
    return null;
  };
  const up = await a.call("author", "POST", "/api/audiences", { name: "staff", recipients: STAFF.map((email) => ({ email })) });
  expect(up.status).toBe(201);
}, 180_000);

beforeEach(({ onTestFailed }) => onTestFailed(() => console.error(`dovecot log:\n${dovecot?.log()}`)));

afterAll(async () => {
  await a?.stop();
  await dovecot?.stop();
});

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;

describe("recall into the mailboxes (IMAP, Dovecot)", () => {
  it("removes every delivered copy and nothing else, records each purge, and says so in the correction", async () => {
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Delete the app", text: "Delete the app from your phone today.", audience: { lists: ["staff"] } })).body;
    for (const u of ["approver1", "approver2"] as const) expect((await a.call(u, "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
    await a.until("fan-out under way", async () => (await get(m.id)).counts.sent >= 300, 60_000);

    const recall = await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "sent in error" });
    expect(recall.status).toBe(200);
    expect(recall.body.delivered).toBeLessThan(N);

    const done = await a.until(
      "purge ended and correction done",
      async () => {
        const cur = await get(m.id);
        return cur.state === "corrected" && cur.purge?.endedAt ? cur : undefined;
      },
      120_000,
    );
    const sent: number = done.counts.sent;
    expect(sent).toBeGreaterThanOrEqual(300);
    expect(done.purge).toMatchObject({ total: sent, purged: sent, notFound: 0, failed: 0, pending: 0 });

    // Per recipient: purged exactly when the original was sent; no purge state for the others.
    const all: Array<{ email: string; status: string; purge: string | null; purgeReason: string | null }> = [];
    for (let cursor: string | null = "0"; cursor !== null; ) {
      const page: { items: typeof all; nextCursor: string | null } = (await a.call("ops", "GET", `/api/messages/${m.id}/recipients?cursor=${cursor}&limit=500`)).body;
      all.push(...page.items);
      cursor = page.nextCursor;
    }
    expect(all).toHaveLength(N);
    const delivered = all.filter((r) => r.status === "sent").map((r) => r.email);
    const skipped = all.filter((r) => r.status === "skipped").map((r) => r.email);
    expect(delivered).toHaveLength(sent);
    expect(skipped).toHaveLength(N - sent);
    for (const r of all) expect(r.purge).toBe(r.status === "sent" ? "purged" : null);

    // The mailboxes: the original is gone from each that had it; the other mail and the correction stay.
    const correctionId = m.messageId.replace(/^<airlock\./, "<airlock-correction.");
    await inParallel(delivered, 16, async (u) => {
      const ids = await dovecot.list(u);
      expect(ids, u).not.toContain(m.messageId);
      expect(ids, u).toContain(OTHER_ID(u));
      expect(ids, u).toContain(correctionId);
    });
    // Those never handed the message: never had it, still have their mail, got no correction.
    await inParallel(skipped.filter((_, i) => i % 10 === 0), 16, async (u) => {
      expect(await dovecot.list(u), u).toEqual([OTHER_ID(u)]);
    });

    // Each recipient's correction says the message was removed from their mailbox.
    const corrections = a.sink.received.filter((r) => r.mail.inReplyTo === m.messageId);
    expect(corrections.flatMap((r) => r.to).sort()).toEqual(delivered.slice().sort());
    for (const c of corrections) {
      expect(c.mail.text).toContain("It has been removed from your mailbox.");
      expect(c.mail.text).not.toContain("If it is still in your mailbox");
      expect(c.mail.html).toContain("It has been removed from your mailbox.");
    }

    // The audit records the purge's start and end with its counts.
    const events: Array<{ action: string; detail: string }> = (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items;
    const start = events.find((e) => e.action === "purgeStart");
    const end = events.find((e) => e.action === "purgeEnd");
    expect(JSON.parse(start!.detail)).toEqual({ recipients: sent });
    expect(JSON.parse(end!.detail)).toEqual({ purged: sent, notFound: 0, failed: 0 });
  }, 240_000);
});
