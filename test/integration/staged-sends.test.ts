/**
 * Staged sends (SPEC "Staged sends", promise 9), end to end: real Redis, a real SMTP sink for what
 * goes out, real SMTP clients talking to Airlock's inbound listener, the report link over HTTP.
 * The wait after the canary is 10 minutes: nothing of the rest goes unless ops continue it, or the
 * test moves Airlock's clock past the wait (the sweep then opens the rest, as the timer would).
 */
import nodemailer from "nodemailer";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chooseCanary } from "../../src/waves/canary.js";
import { domainOf } from "../../src/domain/recipient-domains.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";
import { dsnFixture } from "../support/dsn-fixtures.js";
import type { Received } from "../support/smtp-sink.js";

const N = 400;
const DOMAINS = ["corp.example", "eu.corp.example", "us.corp.example"];
/** The author and an approver are among the recipients: with the approver, the seed cohort. */
const PEOPLE = ["author@corp.example", "approver1@corp.example", ...Array.from({ length: N - 2 }, (_, i) => `person${i}@${DOMAINS[i % 3]}`)];
const SETTINGS = {
  WAVES_THRESHOLD: "100",
  CANARY_PERCENT: "5",
  CANARY_MIN_RECIPIENTS: "10",
  RETURN_PATH_DOMAIN: "bounces.corp.example",
  RECIPIENTS_PER_TRANSACTION: "20",
  // One bounce of the 22 early recipients is 4.5%: over the default 2%. The reply test sends three
  // (13.6%) and one delayed DSN, which is not a bounce.
  SIGNAL_BOUNCE_PERCENT: "20",
};
/** 5% of 400, over the minimum of 10. */
const CANARY = 20;
const SEED = 2;

let slow: TestAirlock;

beforeAll(async () => {
  slow = await startAirlock({ ...SETTINGS, CANARY_WAIT_MINUTES: "10" });
  const up = await slow.call("author", "POST", "/api/audiences?name=staff", "email\n" + PEOPLE.join("\n"), { "content-type": "text/csv" });
  expect(up.status).toBe(201);
}, 60_000);
afterAll(async () => slow?.stop());

const get = async (a: TestAirlock, id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
const originalsOf = (a: TestAirlock, messageId: string): Received[] => a.sink.received.filter((r) => r.mail.messageId === messageId);
const recipientsOf = (rs: Received[]) => rs.flatMap((r) => r.to);

/** A staged message to the whole staff list, approved, waited for until its canary's wait. */
async function stagedInWait(a: TestAirlock, subject: string) {
  const created = await a.call("author", "POST", "/api/messages", { subject, text: "Please read.", audience: { lists: ["staff"] } });
  expect(created.status).toBe(201);
  const m = created.body;
  expect(m.waves).toMatchObject({ phase: "approval" });
  // The approval names the digest of both mails (early waves and the rest).
  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest })).status).toBe(200);
  const waiting = await a.until(`${subject}: the wait after the canary`, async () => {
    const cur = await get(a, m.id);
    return cur.waves?.phase === "wait" && cur;
  });
  return { m, waiting };
}

/** Sends raw mail to the inbound listener of `a`, as a remote MTA would. */
async function toInbound(a: TestAirlock, from: string, to: string, raw: Buffer): Promise<void> {
  const t = nodemailer.createTransport({ host: "127.0.0.1", port: a.rt.inboundPort!, secure: false, ignoreTLS: true });
  try {
    const info = await t.sendMail({ envelope: { from, to }, raw });
    expect(info.accepted).toEqual([to]);
  } finally {
    t.close();
  }
}

/**
 * Holds every SMTP transaction of the message with this Message-ID open at DATA until `letGo`
 * (other mail, such as notifications, goes through): transactions in flight, deterministically.
 */
function holdTransactionsOf(a: TestAirlock, messageId: string): { held: () => number; letGo: () => void } {
  let held = 0;
  let letGo!: () => void;
  const gate = new Promise<void>((r) => (letGo = r));
  a.sink.behaviour = {
    data: async (_to, raw) => {
      if (!raw.toString("latin1").includes(messageId)) return null;
      held++;
      await gate;
      return null;
    },
  };
  return { held: () => held, letGo };
}

/**
 * A staged message to `staff`, approved, with its early transactions held open at DATA: answers once
 * the first is in flight. The caller lets them go (and clears the sink's behaviour).
 */
async function approvedWithEarlyHeld(a: TestAirlock, subject: string) {
  const created = (await a.call("author", "POST", "/api/messages", { subject, text: "Hi", audience: { lists: ["staff"] } })).body;
  const hold = holdTransactionsOf(a, created.messageId);
  try {
    await a.call("approver1", "POST", `/api/messages/${created.id}/approve`, { revision: 1, digest: created.digest });
    // The seed cohort's first transaction is open (one batch here: its early recipients go one by one).
    await a.until("an early transaction in flight", () => hold.held() >= 1);
  } catch (e) {
    hold.letGo();
    throw e;
  }
  return { created, ...hold };
}

const reply = (to: string, from: string, id: string, extra: string[] = [], body = "Is this right? We were told the opposite yesterday.") =>
  Buffer.from([`From: ${from}`, `To: ${to}`, "Subject: Re: the message", `Message-ID: <${id}@corp.example>`, ...extra, "Content-Type: text/plain; charset=utf-8", "", body].join("\r\n"));

describe("a staged send", () => {
  it("goes in waves: the seed cohort and a reproducible canary spread over domains, each early copy with its own return path, then the rest after the wait", async () => {
    const a = slow;
    const { m, waiting } = await stagedInWait(a, "Waves");
    expect(waiting.waves).toMatchObject({ seed: SEED, canary: CANARY, rest: N - SEED - CANARY, handed: SEED + CANARY });
    const early = originalsOf(a, m.messageId);
    // Before the rest: exactly the early waves, each recipient once, in a transaction of its own
    // whose return path names it (VERP); the early mail has the report link and replies to Airlock.
    expect(recipientsOf(early)).toHaveLength(SEED + CANARY);
    expect(new Set(recipientsOf(early)).size).toBe(SEED + CANARY);
    expect(recipientsOf(early)).toEqual(expect.arrayContaining(["author@corp.example", "approver1@corp.example"]));
    const indexOf = new Map<string, number>();
    (await a.rt.store.recipientSlice(m.id, 0, N)).forEach((e, i) => indexOf.set(e, i));
    for (const r of early) {
      expect(r.to).toHaveLength(1);
      expect(r.from).toBe(a.rt.verp!.bounceAddress(m.id, indexOf.get(r.to[0]!)!));
      expect(r.mail.text).toContain(`/report/${m.id}.`);
      expect(r.mail.replyTo?.value[0]?.address).toBe(a.rt.verp!.replyAddress(m.id, "r"));
    }
    const canaryPeople = recipientsOf(early).filter((e) => e.startsWith("person"));
    expect(new Set(canaryPeople.map(domainOf))).toEqual(new Set(DOMAINS));

    // The canary is the sample its recorded seed gives (the seed cohort excluded).
    const seedIndexes = ["author@corp.example", "approver1@corp.example"].map((e) => indexOf.get(e)!);
    const again = await chooseCanary({
      n: N,
      seed: waiting.waves.canarySeed,
      percent: 5,
      minimum: 10,
      exclude: seedIndexes,
      facts: async function* () {
        for (const [e, i] of indexOf) yield { index: i, domain: domainOf(e) };
      },
    });
    expect([...again].map((i) => [...indexOf].find(([, j]) => j === i)![0]).sort()).toEqual(canaryPeople.slice().sort());

    // The wait is over (Airlock's clock moved past it): the sweep opens the rest, as the timer would.
    a.clock.advance(10 * 60_000);
    const done = await a.until("sent", async () => {
      const cur = await get(a, m.id);
      return cur.state === "sent" && cur;
    });
    const all = originalsOf(a, m.messageId);
    expect(recipientsOf(all).slice().sort()).toEqual(PEOPLE.slice().sort());
    // The rest went after the wait, in the plain mail: no report link, replies to the sender.
    expect(Date.parse(done.waves.startedAt.rest)).toBeGreaterThanOrEqual(Date.parse(waiting.waves.waitUntil));
    for (const r of all.filter((x) => !early.includes(x))) {
      expect(r.mail.text).not.toContain("/report/");
      expect(r.mail.replyTo).toBeUndefined();
    }
    const actions = (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items.map((e: { action: string }) => e.action);
    expect(actions).toEqual(expect.arrayContaining(["wavesPlanned", "openWave", "canaryWait", "finish"]));
  });

  it("sends the seed audience's members among the recipients first, with the author and the approver; nobody outside the recipients", async () => {
    const a = slow;
    const leads = ["person0@corp.example", "person1@eu.corp.example", "person2@us.corp.example", "outsider@corp.example"];
    expect((await a.call("author", "POST", "/api/audiences?name=leads", "email\n" + leads.join("\n"), { "content-type": "text/csv" })).status).toBe(201);
    const created = await a.call("author", "POST", "/api/messages", { subject: "Seeded", text: "Hi", audience: { lists: ["staff"] }, seedAudience: "leads" });
    expect(created.body.waves).toMatchObject({ seedAudience: "leads" });
    // The approval request says it goes in waves, and who first.
    const request = await a.until("the approval request", () =>
      a.sink.received.find((r) => r.to.includes("approver1@corp.example") && (r.mail.text ?? "").includes(`/messages/${created.body.id}`) && /approv/i.test(r.mail.subject ?? "")),
    );
    expect(request.mail.text).toMatch(/In waves:\s+first the author and the approvers and audience leads/);
    await a.call("approver1", "POST", `/api/messages/${created.body.id}/approve`, { revision: 1, digest: created.body.digest });
    const waiting = await a.until("the wait", async () => {
      const cur = await get(a, created.body.id);
      return cur.waves?.phase === "wait" && cur;
    });
    expect(waiting.waves).toMatchObject({ seed: SEED + 3, canary: CANARY });
    const early = recipientsOf(originalsOf(a, created.body.messageId));
    expect(early).toHaveLength(SEED + 3 + CANARY);
    expect(early).toEqual(expect.arrayContaining(leads.slice(0, 3)));
    expect(early).not.toContain("outsider@corp.example");
    await a.call("ops", "POST", `/api/messages/${created.body.id}/recall`, { reason: "test over" });
  });

  it("counts bounces and human replies, not auto-replies; three human replies halt it, nothing of the rest goes, ops continue it", async () => {
    const a = slow;
    const { m } = await stagedInWait(a, "Replies");
    const early = originalsOf(a, m.messageId);
    const replyTo = early[0]!.mail.replyTo!.value[0]!.address!;

    await toInbound(a, "bob@corp.example", replyTo, reply(replyTo, "Bob <bob@corp.example>", "auto-1", ["Auto-Submitted: auto-replied"], "I am out of the office."));
    // DSNs of three MTAs' shapes, each to the return path of another early recipient, and a delayed one.
    const people = early.filter((r) => r.to[0]!.startsWith("person"));
    const fixtures = ["postfix-failed.eml", "office365.eml", "gmail.eml", "postfix-delayed.eml"] as const;
    for (const [i, name] of fixtures.entries()) await toInbound(a, "", people[i]!.from, dsnFixture(name, people[i]!.from));
    let cur = await get(a, m.id);
    expect(cur.waves.signals).toMatchObject({ autoReplies: 1, replies: 0, bounces: 3 });
    expect(cur.paused).toBeNull();
    const indexOf = new Map<string, number>();
    (await a.rt.store.recipientSlice(m.id, 0, N)).forEach((e, i) => indexOf.set(e, i));
    const bounces = (await a.call("ops", "GET", `/api/messages/${m.id}/signals`)).body.items.filter((e: { kind: string }) => e.kind === "bounce");
    // The VERP address names who bounced, whatever the DSN's body says.
    expect(bounces.map((e: { index: number }) => e.index).sort()).toEqual(people.slice(0, 3).map((r) => indexOf.get(r.to[0]!)).sort());

    for (const [i, who] of ["carol", "dan", "erin"].entries()) {
      await toInbound(a, `${who}@corp.example`, replyTo, reply(replyTo, `${who}@corp.example`, `human-${i}`));
      // The same reply delivered twice counts once.
      if (i === 0) await toInbound(a, `${who}@corp.example`, replyTo, reply(replyTo, `${who}@corp.example`, `human-${i}`));
    }
    cur = await get(a, m.id);
    expect(cur.paused).toMatchObject({ by: "airlock", reason: expect.stringMatching(/^signal: 3 human replies/) });
    expect(cur.waves).toMatchObject({ phase: "wait", haltedBy: { kind: "reply", count: 3 }, signals: { replies: 3, autoReplies: 1, bounces: 3 } });
    const evidence = (await a.call("ops", "GET", `/api/messages/${m.id}/signals`)).body.items;
    expect(evidence.filter((e: { kind: string }) => e.kind === "reply").map((e: { from: string }) => e.from).sort()).toEqual(["carol@corp.example", "dan@corp.example", "erin@corp.example"]);
    expect(evidence.find((e: { kind: string }) => e.kind === "bounce")).toMatchObject({ index: expect.any(Number), status: expect.stringMatching(/^5\./) });
    // Ops are told.
    await a.until("the halt mailed to ops", () => a.sink.received.some((r) => r.to.includes("ops@corp.example") && /Halted/.test(r.mail.subject ?? "")));
    expect(recipientsOf(originalsOf(a, m.messageId))).toHaveLength(SEED + CANARY);

    expect((await a.call("author", "POST", `/api/messages/${m.id}/continue`, {})).status).toBe(403);
    const continued = await a.call("ops", "POST", `/api/messages/${m.id}/continue`, {});
    expect(continued.status).toBe(200);
    expect(continued.body.paused).toBeNull();
    await a.until("sent", async () => (await get(a, m.id)).state === "sent");
    const all = recipientsOf(originalsOf(a, m.messageId));
    expect(all.slice().sort()).toEqual(PEOPLE.slice().sort());
    const actions = (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items.map((e: { action: string }) => e.action);
    // 1 auto-reply, 3 bounces, 3 human replies (the repeated one is not counted).
    expect(actions.filter((x: string) => x === "signal")).toHaveLength(7);
    expect(actions).toEqual(expect.arrayContaining(["pause", "continue"]));
  });

  it("bounces over their share of the early waves halt it", async () => {
    const a = slow;
    const { m } = await stagedInWait(a, "Bounces");
    const people = originalsOf(a, m.messageId).filter((r) => r.to[0]!.startsWith("person"));
    for (const r of people.slice(0, 4)) await toInbound(a, "", r.from, dsnFixture("postfix-failed.eml", r.from));
    expect((await get(a, m.id)).paused).toBeNull(); // 4 of 22: 18%, not over 20%
    await toInbound(a, "", people[4]!.from, dsnFixture("postfix-failed.eml", people[4]!.from));
    const halted = await get(a, m.id);
    expect(halted.paused?.reason).toBe("signal: 5 bounces of 22 early recipients (over 20%)");
    expect(halted.waves.haltedBy).toMatchObject({ kind: "bounce", count: 5 });
    await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "bad addresses" });
  });

  it("ops halt it by hand; a resume lets the plan go on: the rest goes at the wait's end, not before", async () => {
    const a = slow;
    const { m } = await stagedInWait(a, "By hand");
    expect((await a.call("author", "POST", `/api/messages/${m.id}/halt`, { reason: "checking" })).status).toBe(403);
    const halted = await a.call("ops", "POST", `/api/messages/${m.id}/halt`, { reason: "checking the figures" });
    expect(halted.body.paused).toMatchObject({ by: "ops@corp.example", reason: "halted: checking the figures" });
    expect((await a.call("ops", "POST", `/api/messages/${m.id}/resume`, {})).status).toBe(200);
    const resumed = await get(a, m.id);
    expect(resumed).toMatchObject({ state: "sending", paused: null, waves: { phase: "wait" } });
    expect(recipientsOf(originalsOf(a, m.messageId))).toHaveLength(SEED + CANARY);
    a.clock.advance(10 * 60_000);
    await a.until("sent", async () => (await get(a, m.id)).state === "sent");
    expect(recipientsOf(originalsOf(a, m.messageId))).toHaveLength(N);
  });

  it("continue during the seed cohort starts the canary; the same continue again is refused, so the rest never skips the canary and its wait", async () => {
    const a = slow;
    const { created, letGo } = await approvedWithEarlyHeld(a, "Continue twice");
    try {
      expect((await get(a, created.id)).waves.phase).toBe("seed");
      expect((await a.call("ops", "POST", `/api/messages/${created.id}/halt`, { reason: "look first" })).status).toBe(200);
      expect((await a.call("ops", "POST", `/api/messages/${created.id}/continue`, { from: "nonsense" })).status).toBe(400);
      const first = await a.call("ops", "POST", `/api/messages/${created.id}/continue`, { from: "seed" });
      expect(first.status).toBe(200);
      expect(first.body).toMatchObject({ paused: null, waves: { phase: "canary" } });
      // The same continue again (a retry, a double click): refused, nothing changed.
      const again = await a.call("ops", "POST", `/api/messages/${created.id}/continue`, { from: "seed" });
      expect(again.status).toBe(409);
      expect(again.body.error.message).toMatch(/moved on/);
      letGo();
      const waiting = await a.until("the wait", async () => {
        const cur = await get(a, created.id);
        return cur.waves.phase === "wait" && cur;
      });
      expect(waiting.waves.startedAt.rest).toBeNull();
      expect(recipientsOf(originalsOf(a, created.messageId)).sort()).toEqual([...new Set(recipientsOf(originalsOf(a, created.messageId)))].sort());
      expect(recipientsOf(originalsOf(a, created.messageId))).toHaveLength(SEED + CANARY);
    } finally {
      letGo();
      a.sink.behaviour = {};
    }
    await a.call("ops", "POST", `/api/messages/${created.id}/recall`, { reason: "test over" });
  });

  it("a report from the footer halts it; a recall then corrects only the early waves, and the rest never gets anything (promise 9)", async () => {
    const a = slow;
    const { m } = await stagedInWait(a, "Report");
    const early = originalsOf(a, m.messageId);
    // PUBLIC_URL is not this test server's address: the path is what the link is.
    const link = a.url + /\/report\/\S+/.exec(early[0]!.mail.text ?? "")![0];
    const page = await fetch(link);
    expect(page.status).toBe(200);
    expect((await get(a, m.id)).waves.signals.reports).toBe(0); // GET changes nothing (mail scanners open links)
    const posted = await fetch(link, { method: "POST", body: new URLSearchParams({ note: "This is the wrong policy." }) });
    expect(posted.status).toBe(200);
    const halted = await get(a, m.id);
    expect(halted.paused?.reason).toMatch(/^signal: 1 problem report/);

    const recall = await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "wrong policy" });
    expect(recall.body).toMatchObject({ state: "correcting", delivered: SEED + CANARY });
    await a.until("corrected", async () => (await get(a, m.id)).state === "corrected");
    const originals = recipientsOf(originalsOf(a, m.messageId));
    const corrected = recipientsOf(a.sink.received.filter((r) => r.mail.inReplyTo === m.messageId));
    expect(originals).toHaveLength(SEED + CANARY);
    expect(corrected.slice().sort()).toEqual(originals.slice().sort());
    expect((await get(a, m.id)).counts).toMatchObject({ sent: SEED + CANARY, skipped: N - SEED - CANARY, corrected: SEED + CANARY });
  });

  it("permanent SMTP failures in the early waves halt it mid-canary; continued then, the canary's and the rest's jobs never send anyone twice", async () => {
    const a = slow;
    a.sink.behaviour = { rcpt: (addr) => (addr.endsWith("@us.corp.example") ? { code: 550, message: "5.1.1 no such user" } : null) };
    let created: { id: string; messageId: string; digest: string };
    try {
      created = (await a.call("author", "POST", "/api/messages", { subject: "Failures", text: "Hi", audience: { lists: ["staff"] } })).body;
      await a.call("approver1", "POST", `/api/messages/${created.id}/approve`, { revision: 1, digest: created.digest });
      const halted = await a.until("halted by failures", async () => {
        const cur = await get(a, created.id);
        return cur.paused ? cur : undefined;
      });
      expect(halted.paused.reason).toMatch(/^signal: \d+ permanent SMTP failures? of 22 early recipients/);
      expect(halted.waves.haltedBy.kind).toBe("failure");
    } finally {
      a.sink.behaviour = {};
    }
    // Continued while canary jobs are parked: they and the rest's jobs run over the same ranges.
    const continued = await a.call("ops", "POST", `/api/messages/${created.id}/continue`, {});
    expect(continued.status).toBe(200);
    const done = await a.until("sent", async () => {
      const cur = await get(a, created.id);
      return cur.state === "sent" && cur;
    });
    const got = recipientsOf(originalsOf(a, created.messageId));
    expect(new Set(got).size).toBe(got.length);
    expect(done.possibleDuplicates).toBe(0);
    expect(done.counts.sent).toBe(got.length);
    expect(done.counts.sent + done.counts.failed).toBe(N);
    // The failed are early recipients at us.corp.example refused before the halt, recorded with the reply, never tried again.
    const failed = (await a.call("ops", "GET", `/api/messages/${created.id}/recipients?status=failed&limit=100`)).body.items;
    expect(failed.length).toBe(done.counts.failed);
    expect(failed.length).toBeGreaterThanOrEqual(1);
    for (const r of failed) expect(r).toMatchObject({ email: expect.stringMatching(/@us\.corp\.example$/), reply: expect.stringContaining("5.1.1") });
    expect(got.filter((e) => failed.some((f: { email: string }) => f.email === e))).toEqual([]);
  });

  it("a recall during the early waves: only the transactions in flight at its answer went, and only they are corrected (promises 3 and 9)", async () => {
    const a = slow;
    // The early transactions of this message are held open at DATA until the recall is answered.
    const { created, held, letGo } = await approvedWithEarlyHeld(a, "Recall in the canary");
    try {
      const recall = await a.call("ops", "POST", `/api/messages/${created.id}/recall`, { reason: "wrong" });
      const answeredAt = Date.now();
      expect(recall.status).toBe(200);
      letGo();
      const delivered: number = recall.body.delivered;
      expect(delivered).toBeGreaterThanOrEqual(1);
      expect(delivered).toBeLessThan(SEED + CANARY);
      await a.until("corrected", async () => (await get(a, created.id)).state === "corrected");
      const originals = recipientsOf(originalsOf(a, created.messageId));
      const corrected = recipientsOf(a.sink.received.filter((r) => r.mail.inReplyTo === created.messageId));
      expect(originals).toHaveLength(delivered);
      expect(corrected.slice().sort()).toEqual(originals.slice().sort());
      // No transaction of the original began after the recall was answered (a claim of several early
      // recipients sent one by one would have gone on handing them over).
      const late = a.sink.transactions.filter((t) => t.messageId === created.messageId && t.startedAt > answeredAt);
      expect(late).toEqual([]);
    } finally {
      letGo();
      a.sink.behaviour = {};
    }
  });

  it("is chosen per message: waves: false needs an admin, waves: true stages even a small one", async () => {
    const a = slow;
    const off = { subject: "All at once", text: "Hi", audience: { lists: ["staff"] }, waves: false };
    const refused = await a.call("author", "POST", "/api/messages", off);
    expect(refused.status).toBe(403);
    expect(refused.body.error.message).toMatch(/only admins/);
    const byAdmin = await a.call("admin", "POST", "/api/messages", off);
    expect(byAdmin.status).toBe(201);
    expect(byAdmin.body.waves).toBeNull();
    const small = await a.call("author", "POST", "/api/messages", { subject: "Small", text: "Hi", audience: { addresses: ["x@corp.example"] }, waves: true });
    expect(small.status).toBe(201);
    expect(small.body.waves).toMatchObject({ phase: "approval" });
    // A draft takes the choice when it is submitted.
    const draft = await a.call("author", "POST", "/api/messages", { subject: "Draft", text: "Hi", audience: { addresses: ["y@corp.example"] }, draft: true });
    expect((await a.call("author", "POST", "/api/messages", { subject: "D", text: "Hi", audience: { addresses: ["y@corp.example"] }, draft: true, waves: true })).status).toBe(400);
    expect((await a.call("author", "POST", `/api/messages/${draft.body.id}/submit`, { waves: false })).status).toBe(403);
    const submitted = await a.call("author", "POST", `/api/messages/${draft.body.id}/submit`, { waves: true });
    expect(submitted.status).toBe(200);
    expect(submitted.body.waves).toMatchObject({ phase: "approval" });
    const unknownSeed = await a.call("author", "POST", "/api/messages", { subject: "Seed", text: "Hi", audience: { lists: ["staff"] }, seedAudience: "nobody" });
    expect(unknownSeed.status).toBe(400);
    expect(unknownSeed.body.error.message).toMatch(/seedAudience: audience nobody does not exist/);
    // A seed audience goes before the canary: a few people, not a wave of its own.
    const tooBig = await a.call("author", "POST", "/api/messages", { subject: "Seed", text: "Hi", audience: { lists: ["staff"] }, seedAudience: "staff" });
    expect(tooBig.status).toBe(400);
    expect(tooBig.body.error.message).toMatch(/at most 100 people \(staff has 400\)/);
  });
});
