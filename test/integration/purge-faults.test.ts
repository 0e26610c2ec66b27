/**
 * The purge when things go wrong, against a real Dovecot: a connector that cannot log in makes
 * every purge `failed` with the reason and delays neither the recall's answer nor the correction
 * (which then asks recipients to delete the message themselves); workers killed mid-purge lose no
 * recipient; a custom correction goes in its approved bytes, without waiting for the purge.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { PurgeConnector } from "../../src/purge/connector.js";
import { ImapPurgeConnector } from "../../src/purge/imap-connector.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";
import { dashboardClient } from "../support/dashboard-client.js";
import { startDovecot, type Dovecot } from "../support/dovecot.js";

const N = 60;
const STAFF = Array.from({ length: N }, (_, i) => `member${i}@corp.example`);
let dovecot: Dovecot;
let a: TestAirlock | undefined;

beforeAll(async () => {
  dovecot = await startDovecot({ users: STAFF });
});
beforeEach(({ onTestFailed }) => onTestFailed(() => console.error(`dovecot log:\n${dovecot?.log()}`)));
afterEach(async () => {
  await a?.stop();
  a = undefined;
});
afterAll(async () => dovecot?.stop());

const timing = { concurrency: 4, ratePerSecond: 10_000, retryForMs: 60_000, retryEveryMs: 500 };

function imap(adminPassword = dovecot.adminPassword): ImapPurgeConnector {
  return new ImapPurgeConnector({ host: dovecot.host, port: dovecot.port, tls: "none", adminUser: dovecot.adminUser, adminPassword });
}

/** An Airlock whose sink stores what it accepts in the staff's mailboxes, with `staff` uploaded; the purge from settings when `connector` is a set of variables. */
async function airlockWith(connector: PurgeConnector | Record<string, string>, correctionWaitMs = 120_000): Promise<TestAirlock> {
  const t = "purge" in connector && typeof connector.purge === "function" ? await startAirlock({}, { purge: { connector: connector as PurgeConnector, timing, correctionWaitMs } }) : await startAirlock(connector as Record<string, string>);
  const mailboxes = new Set(STAFF);
  t.sink.behaviour.data = async (to, raw) => {
    for (const u of to) if (mailboxes.has(u)) await dovecot.append(u, raw.toString("latin1"));
    return null;
  };
  expect((await t.call("author", "POST", "/api/audiences", { name: "staff", recipients: STAFF.map((email) => ({ email })) })).status).toBe(201);
  return t;
}

/** Submits to the staff, approves, and waits until every copy was delivered. */
async function sentToStaff(t: TestAirlock, subject: string): Promise<{ id: string; messageId: string }> {
  const m = (await t.call("author", "POST", "/api/messages", { subject, text: "Please read.", audience: { lists: ["staff"] } })).body;
  expect((await t.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  await t.until("sent", async () => (await t.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "sent", 30_000);
  return m;
}

const corrections = (t: TestAirlock, messageId: string) => t.sink.received.filter((r) => r.mail.inReplyTo === messageId);

describe("purge faults", () => {
  it("a connector that cannot log in: every purge failed with the reason; the correction goes at once and asks recipients to delete it", async () => {
    a = await airlockWith(imap("wrong-master-password"));
    const t = a;
    const m = await sentToStaff(t, "Wrong password");
    const recall = await t.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "sent in error" });
    expect(recall.status).toBe(200);
    const done = await t.until("corrected and purge ended", async () => {
      const cur = (await t.call("ops", "GET", `/api/messages/${m.id}`)).body;
      return cur.state === "corrected" && cur.purge?.endedAt ? cur : undefined;
    });
    expect(done.purge).toMatchObject({ total: N, purged: 0, notFound: 0, failed: N, pending: 0 });
    const page = (await t.call("ops", "GET", `/api/messages/${m.id}/recipients?limit=${N}`)).body;
    for (const r of page.items) {
      expect(r.purge).toBe("failed");
      expect(r.purgeReason).toMatch(/log in|login|authenticat/i);
    }
    // Long before the correction's two-minute wait: failed purges are answers, not reasons to wait.
    expect(Date.parse(done.updatedAt) - Date.parse(done.recall.at)).toBeLessThan(60_000);
    const sent = corrections(t, m.messageId);
    expect(sent.flatMap((r) => r.to).sort()).toEqual(STAFF.slice().sort());
    for (const c of sent) {
      expect(c.mail.text).toContain("If it is still in your mailbox, please delete it.");
      expect(c.mail.text).not.toContain("It has been removed");
    }
    // Visible to the operator: the counts on the message page and the card, each recipient's reason.
    const ops = await dashboardClient(() => t.url).signIn("ops");
    const page2 = await ops.get(`/messages/${m.id}`);
    expect(page2.html).toContain(`0 removed · 0 not found · ${N} failed · 0 pending of ${N} (done)`);
    expect(page2.html).toMatch(/<td>failed: [^<]*(log in|login|authenticat)/i);
    expect(page2.html).toMatch(new RegExp(`data-field="purgeText">0 removed · 0 not found · ${N} failed · 0 pending of ${N}<`));
    // The original is still in every mailbox: nothing could be removed.
    for (const u of STAFF.slice(0, 5)) expect(await dovecot.list(u)).toContain(m.messageId);
  }, 90_000);

  it("configured by the PURGE_* settings: the recall purges, and the settings on the record carry no password", async () => {
    a = await airlockWith({
      PURGE_CONNECTOR: "imap",
      PURGE_IMAP_URL: `imap://${dovecot.host}:${dovecot.port}`,
      PURGE_IMAP_TLS: "none",
      PURGE_IMAP_ADMIN_USER: dovecot.adminUser,
      PURGE_IMAP_ADMIN_PASSWORD: dovecot.adminPassword,
      PURGE_RATE_PER_SECOND: "1000",
    });
    const t = a;
    const m = await sentToStaff(t, "From settings");
    expect((await t.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "sent in error" })).status).toBe(200);
    const done = await t.until("purge ended", async () => {
      const cur = (await t.call("ops", "GET", `/api/messages/${m.id}`)).body;
      return cur.state === "corrected" && cur.purge?.endedAt ? cur : undefined;
    });
    expect(done.purge).toMatchObject({ total: N, purged: N });
    for (const u of STAFF.slice(0, 5)) expect(await dovecot.list(u)).not.toContain(m.messageId);
    const settings = (await t.rt.redis.xrange("{airlock}:audit", "-", "+")).map(([, f]) => f).find((f) => f[f.indexOf("action") + 1] === "settings")!;
    const detail = settings[settings.indexOf("detail") + 1]!;
    expect(JSON.parse(detail).settings.purge).toMatchObject({ connector: "imap", host: dovecot.host, port: dovecot.port, adminUser: dovecot.adminUser, ratePerSecond: 1000 });
    expect(detail).not.toContain(dovecot.adminPassword);
    // And on /metrics: every recipient purged, no purge running.
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    expect(metrics).toMatch(new RegExp(`^airlock_recipients\\{outcome="purged"\\} ${N}$`, "m"));
    expect(metrics).toMatch(/^airlock_purges_running 0$/m);
  }, 90_000);

  it("workers killed mid-purge lose no recipient: the purges in hand at the crash are done again by another worker, each recorded once", async () => {
    const real = imap();
    // The purges in hand when the workers die are never answered (the crash takes them along); any
    // purge after the crash is real. So every mailbox in hand at the crash is purged only if another
    // worker takes the abandoned job over.
    let crashed = false;
    const inHandAtCrash = new Set<string>();
    const calls = new Map<string, number>();
    const held: PurgeConnector = {
      async purge(mailbox, messageId) {
        calls.set(mailbox, (calls.get(mailbox) ?? 0) + 1);
        if (!crashed) {
          inHandAtCrash.add(mailbox);
          return new Promise(() => {}); // never answered
        }
        return real.purge(mailbox, messageId);
      },
      close: () => real.close(),
    };
    a = await airlockWith(held);
    const t = a;
    const m = await sentToStaff(t, "Crash mid-purge");
    expect((await t.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "sent in error" })).status).toBe(200);
    await t.until("purges in hand", () => inHandAtCrash.size >= timing.concurrency);
    crashed = true;
    await t.crashWorkers(); // the forced close abandons the job in hand: its lock lapses, another worker takes it
    const done = await t.until(
      "purge ended",
      async () => {
        const cur = (await t.call("ops", "GET", `/api/messages/${m.id}`)).body;
        return cur.state === "corrected" && cur.purge?.endedAt ? cur : undefined;
      },
      60_000,
    );
    expect(done.purge).toMatchObject({ total: N, purged: N, notFound: 0, failed: 0 });
    for (const u of inHandAtCrash) expect(calls.get(u), u).toBe(2); // abandoned, then done by the survivor
    // Taken over by BullMQ's stalled-job check, not re-driven by the sweep (its pass ids name "sweep").
    const jobs = await t.rt.scheduler.purge.getJobs(["completed", "active", "waiting", "delayed", "failed", "prioritized"]);
    expect(jobs.map((j) => j.id).filter((jobId) => jobId?.includes("sweep"))).toEqual([]);
    for (const u of STAFF) expect(await dovecot.list(u), u).not.toContain(m.messageId);
    for (const c of corrections(t, m.messageId)) expect(c.mail.text).toContain("It has been removed from your mailbox.");
  }, 90_000);

  it("not found is tried again: a copy that lands after the first attempt (still in transit) is removed by a later one", async () => {
    const real = imap();
    const late = STAFF[0]!;
    let lateCopy: string | null = null;
    const attempts: string[] = [];
    const watching: PurgeConnector = {
      async purge(mailbox, messageId) {
        const r = await real.purge(mailbox, messageId);
        if (mailbox === late) {
          attempts.push(r.outcome);
          // The first attempt found nothing: now the copy arrives, as a delayed delivery would.
          if (attempts.length === 1 && lateCopy) await dovecot.append(late, lateCopy);
        }
        return r;
      },
      close: () => real.close(),
    };
    a = await airlockWith(watching);
    const t = a;
    // The sink accepts the late recipient's copy but does not store it yet.
    const store = t.sink.behaviour.data!;
    t.sink.behaviour.data = async (to, raw, client) => {
      if (to.includes(late) && lateCopy === null && /^Subject: In transit/m.test(raw.toString("latin1"))) lateCopy = raw.toString("latin1");
      return store(to.filter((u) => u !== late || lateCopy === null || raw.toString("latin1") !== lateCopy), raw, client);
    };
    const m = await sentToStaff(t, "In transit");
    expect(lateCopy).not.toBeNull();
    expect(await dovecot.list(late)).not.toContain(m.messageId);
    expect((await t.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "sent in error" })).status).toBe(200);
    const done = await t.until(
      "purge ended",
      async () => {
        const cur = (await t.call("ops", "GET", `/api/messages/${m.id}`)).body;
        return cur.purge?.endedAt ? cur : undefined;
      },
      60_000,
    );
    expect(attempts).toEqual(["not_found", "purged"]);
    expect(done.purge).toMatchObject({ total: N, purged: N, notFound: 0, failed: 0 });
    expect(await dovecot.list(late)).not.toContain(m.messageId);
  }, 90_000);

  it("a custom correction goes in its approved bytes, without the purge's sentence and without waiting for it", async () => {
    const real = imap();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const held: PurgeConnector = { purge: async (mb, id) => (await gate, real.purge(mb, id)), close: () => real.close() };
    a = await airlockWith(held);
    const t = a;
    const m = await sentToStaff(t, "Custom correction");
    expect((await t.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "wrong app", correctionText: "Keep the app; delete only the old one." })).status).toBe(200);
    expect((await t.call("approver2", "POST", `/api/messages/${m.id}/correction/approve`, {})).status).toBe(200);
    // Every correction goes while every purge is still held.
    await t.until("corrected", async () => (await t.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "corrected", 30_000);
    for (const c of corrections(t, m.messageId)) {
      expect(c.mail.text).toContain("Keep the app; delete only the old one.");
      expect(c.mail.text).not.toMatch(/removed from your mailbox|still in your mailbox/);
    }
    release();
    await t.until("purge ended", async () => (await t.call("ops", "GET", `/api/messages/${m.id}`)).body.purge?.endedAt ?? undefined, 30_000);
  }, 90_000);
});
