/**
 * Ops pause and resume a running fan-out (SPEC roles table): once the pause is answered, no further
 * recipient is handed to SMTP (transactions already under way finish); the message stays `sending`;
 * a resume sends the rest, each recipient once; a recall while paused still stops and corrects; the
 * correction's own fan-out can be paused too. Against the real workers, Redis and SMTP sink.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";
import { dashboardClient } from "../support/dashboard-client.js";

let a: TestAirlock;
const N = 4000;

beforeAll(async () => {
  // Rate-limited so that a fan-out lasts ~4 s and a pause lands in the middle of it.
  a = await startAirlock({ SEND_RATE_PER_SECOND: "1000", RECIPIENTS_PER_TRANSACTION: "50", SMTP_POOL_SIZE: "4" });
  const csv = "email\n" + Array.from({ length: N }, (_, i) => `p${i}@corp.example`).join("\n");
  expect((await a.call("author", "POST", "/api/audiences?name=pause-all", csv, { "content-type": "text/csv" })).status).toBe(201);
});
afterAll(async () => a?.stop());

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
const originalsOf = (messageId: string) => a.sink.received.filter((r) => r.mail.messageId === messageId).flatMap((r) => r.to);
const correctionsOf = (messageId: string) => a.sink.received.filter((r) => r.mail.inReplyTo === messageId).flatMap((r) => r.to);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const { signIn } = dashboardClient(() => a.url);

async function sending(subject: string): Promise<{ id: string; messageId: string }> {
  const m = (await a.call("author", "POST", "/api/messages", { subject, text: "Hello all", audience: { lists: ["pause-all"] } })).body;
  await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
  await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
  await a.until("fan-out under way", async () => (await get(m.id)).counts.sent >= 500, 30_000);
  return m;
}

/** Waits until the transactions claimed before the pause have settled, then checks nothing moves for a while. */
async function holds(id: string, messageId: string, field: "sent" | "corrected"): Promise<number> {
  await a.until("in-flight transactions settled", async () => {
    const m = await get(id);
    return (field === "sent" ? m.counts.inFlight : 0) === 0;
  });
  await sleep(300); // a correction transaction claimed just before the pause settles within this
  const before = (await get(id)).counts[field];
  const atSink = field === "sent" ? originalsOf(messageId).length : correctionsOf(messageId).length;
  await sleep(1500); // at 1,000 recipients/s, ~1,500 more would have gone out unpaused
  expect((await get(id)).counts[field]).toBe(before);
  expect(field === "sent" ? originalsOf(messageId).length : correctionsOf(messageId).length).toBe(atSink);
  return before;
}

describe("pause and resume", () => {
  it("holds a fan-out from the pause's answer on, and the resume sends the rest, each recipient once", async () => {
    const m = await sending("Pause me");
    expect((await a.call("author", "POST", `/api/messages/${m.id}/pause`, { reason: "x" })).status).toBe(403);
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/pause`, { reason: "x" })).status).toBe(403);
    const bad = await a.call("ops", "POST", `/api/messages/${m.id}/pause`, {});
    expect(bad.status).toBe(400);
    expect(JSON.stringify(bad.body)).toContain("reason");

    const paused = await a.call("ops", "POST", `/api/messages/${m.id}/pause`, { reason: "relay overloaded" });
    expect(paused.status).toBe(200);
    expect(paused.body).toMatchObject({ state: "sending", paused: { by: "ops@corp.example", reason: "relay overloaded" } });
    expect((await a.call("admin", "POST", `/api/messages/${m.id}/pause`, { reason: "again" })).body).toMatchObject({ error: { code: "conflict" } });

    const sentWhilePaused = await holds(m.id, m.messageId, "sent");
    expect(sentWhilePaused).toBeLessThan(N);
    const held = await get(m.id);
    expect(held).toMatchObject({ state: "sending", counts: { queued: N - sentWhilePaused, inFlight: 0 } });

    const resumed = await a.call("admin", "POST", `/api/messages/${m.id}/resume`, {});
    expect(resumed.status).toBe(200);
    expect(resumed.body).toMatchObject({ state: "sending", paused: null });
    expect((await a.call("ops", "POST", `/api/messages/${m.id}/resume`, {})).body).toMatchObject({ error: { code: "conflict" } });

    const done = await a.until("sent", async () => {
      const cur = await get(m.id);
      return cur.state === "sent" && cur;
    }, 30_000);
    expect(done.counts).toMatchObject({ sent: N, queued: 0, skipped: 0, failed: 0 });
    const got = originalsOf(m.messageId);
    expect(got).toHaveLength(N);
    expect(new Set(got).size).toBe(N);

    const events = (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items;
    const pauseEntry = events.find((e: { action: string }) => e.action === "pause");
    const resumeEntry = events.find((e: { action: string }) => e.action === "resume");
    expect(pauseEntry).toMatchObject({ actor: "ops@corp.example", from: "sending", to: "sending" });
    expect(JSON.parse(pauseEntry.detail)).toMatchObject({ reason: "relay overloaded" });
    expect(resumeEntry).toMatchObject({ actor: "admin@corp.example", from: "sending", to: "sending" });
  });

  it("pausing and resuming in quick succession sends everyone once: the same jobs carry on, never a second one per range", async () => {
    const m = await sending("Pause, resume, pause, resume");
    for (let i = 0; i < 4; i++) {
      expect((await a.call("ops", "POST", `/api/messages/${m.id}/pause`, { reason: `blip ${i}` })).status).toBe(200);
      if (i % 2 === 1) await sleep(400); // some jobs reach the paused claim and wait in the delayed set
      expect((await a.call("ops", "POST", `/api/messages/${m.id}/resume`, {})).status).toBe(200);
      await sleep(150);
    }
    const done = await a.until("sent", async () => {
      const cur = await get(m.id);
      return cur.state === "sent" && cur;
    }, 30_000);
    expect(done).toMatchObject({ possibleDuplicates: 0, counts: { sent: N, queued: 0 } });
    const got = originalsOf(m.messageId);
    expect(got).toHaveLength(N);
    expect(new Set(got).size).toBe(N);
  });

  it("recalls a paused fan-out (the recall lifts the pause), and pauses and resumes the correction too", async () => {
    const m = await sending("Pause, then recall");
    expect((await a.call("ops", "POST", `/api/messages/${m.id}/pause`, { reason: "checking a complaint" })).status).toBe(200);
    const sentWhilePaused = await holds(m.id, m.messageId, "sent");

    const recall = await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "sent in error" });
    expect(recall.status).toBe(200);
    expect(recall.body).toMatchObject({ state: "correcting", delivered: sentWhilePaused, paused: null });

    // Hold it halfway: the sink keeps the correction's first transactions open (at most one per
    // pooled connection) until the pause has been answered, so the rest cannot have gone out
    // before it, however fast the correction would otherwise be (its rate bucket is full).
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let held = 0;
    let heldRecipients = 0;
    a.sink.behaviour.data = async (to, raw) => {
      if (raw.includes("In-Reply-To:")) {
        held++;
        heldRecipients += to.length;
        await gate;
      }
      return null;
    };
    try {
      await a.until("correction in flight", async () => held > 0, 30_000);
      expect((await a.call("ops", "POST", `/api/messages/${m.id}/pause`, { reason: "wording of the correction" })).body).toMatchObject({ state: "correcting", paused: { reason: "wording of the correction" } });
    } finally {
      open();
      a.sink.behaviour.data = undefined;
    }
    // Every correction transaction passed the gate, so exactly the held ones settle, and no more.
    await a.until("held transactions settled", async () => (await get(m.id)).counts.corrected >= heldRecipients, 30_000);
    const correctedWhilePaused = await holds(m.id, m.messageId, "corrected");
    // At most the transactions open at the pause: 4 connections of 50 recipients.
    expect(correctedWhilePaused).toBeLessThanOrEqual(4 * 50);
    expect(correctedWhilePaused).toBeLessThan(sentWhilePaused);
    expect((await a.call("ops", "POST", `/api/messages/${m.id}/resume`, {})).status).toBe(200);

    const done = await a.until("corrected", async () => {
      const cur = await get(m.id);
      return cur.state === "corrected" && cur;
    }, 30_000);
    expect(done.counts).toMatchObject({ sent: sentWhilePaused, skipped: N - sentWhilePaused, corrected: sentWhilePaused, correctionFailed: 0 });
    const originals = originalsOf(m.messageId);
    const corrections = correctionsOf(m.messageId);
    expect(originals).toHaveLength(sentWhilePaused);
    expect(corrections.slice().sort()).toEqual(originals.slice().sort());
  });

  it("pauses and resumes from the dashboard: ops only, with a reason, behind the CSRF check", async () => {
    const m = await sending("Pause from the dashboard");
    const [ops, author] = await Promise.all([signIn("ops"), signIn("author")]);
    const front = await ops.get("/");
    expect(front.html).toContain(`href="/messages/${m.id}/pause"`);
    expect((await author.get("/")).html).not.toContain(`/messages/${m.id}/pause`);
    expect((await author.get(`/messages/${m.id}/pause`)).html).toContain("Pausing a fan-out is for the ops and admin roles");
    expect((await author.post(`/messages/${m.id}/pause`, { _csrf: author.csrf, reason: "mine" })).status).toBe(403);

    const form = await ops.get(`/messages/${m.id}/pause`);
    expect(form.status).toBe(200);
    expect(form.html).toContain('action="/messages/' + m.id + '/pause"');
    expect((await ops.post(`/messages/${m.id}/pause`, { reason: "forged" })).status).toBe(403); // no CSRF token
    expect((await ops.post(`/messages/${m.id}/pause`, { _csrf: ops.csrf, reason: "forged" }, { "sec-fetch-site": "cross-site" })).status).toBe(403);
    const noReason = await ops.post(`/messages/${m.id}/pause`, { _csrf: ops.csrf, reason: " " });
    expect(noReason.status).toBe(400);
    expect(noReason.html).toContain("Say why you are pausing it");
    expect((await get(m.id)).paused).toBeNull(); // none of the refused posts paused it

    const done = await ops.post(`/messages/${m.id}/pause`, { _csrf: ops.csrf, reason: "Legal asked to check the wording" });
    expect(done.status).toBe(303);
    expect(done.location).toBe(`/messages/${m.id}`);
    expect((await get(m.id)).paused).toMatchObject({ by: "ops@corp.example", reason: "Legal asked to check the wording" });
    const page = await ops.get(`/messages/${m.id}`);
    expect(page.html).toContain("Paused by ops@corp.example");
    expect(page.html).toContain("Legal asked to check the wording");
    expect(page.html).toContain(`href="/messages/${m.id}/pause" data-field="resume"`);
    const card = await ops.get(`/fragments/card/${m.id}`);
    expect(card.html).toContain("Paused:");
    expect(card.html).not.toContain('data-field="pause"');

    expect((await author.post(`/messages/${m.id}/resume`, { _csrf: author.csrf })).status).toBe(403);
    expect((await ops.post(`/messages/${m.id}/resume`, {})).status).toBe(403); // no CSRF token
    expect((await get(m.id)).paused).not.toBeNull();
    expect((await ops.get(`/messages/${m.id}/pause`)).html).toContain("Resume sending");
    expect((await ops.post(`/messages/${m.id}/resume`, { _csrf: ops.csrf })).status).toBe(303);
    await a.until("sent", async () => (await get(m.id)).state === "sent", 30_000);
    expect(originalsOf(m.messageId)).toHaveLength(N);
  });

  it("refuses to pause what is not being sent, and to resume what is not paused", async () => {
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Not yet", text: "x", audience: { addresses: ["z@corp.example"] } })).body;
    for (const action of ["pause", "resume"]) {
      const r = await a.call("ops", "POST", `/api/messages/${m.id}/${action}`, action === "pause" ? { reason: "x" } : {});
      expect(r.status, action).toBe(409);
      expect(r.body.error.message).toContain("pending_approval");
    }
    expect((await get(m.id)).paused).toBeNull();
  });
});
