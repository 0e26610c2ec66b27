/**
 * Four eyes on every byte (SPEC promise 7), against the real service, Redis and SMTP sink: what
 * an approver approves is exactly what goes out, a sender cannot be spoofed, nothing that could
 * not be built is accepted, and a custom correction text is mailed only after someone other than
 * the recaller approved it.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keys } from "../../src/store/keys.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const team = ["ann@corp.example", "ben@corp.example", "cat@corp.example"];

beforeAll(async () => {
  a = await startAirlock();
});
afterAll(async () => a?.stop());

const draft = (over: Record<string, unknown> = {}) => ({ subject: "Town hall on Friday", text: "Town hall on Friday at 10.", audience: { addresses: team }, ...over });
const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
const originalsOf = (messageId: string) => a.sink.received.filter((r) => r.mail.messageId === messageId);
const correctionsOf = (messageId: string) => a.sink.received.filter((r) => r.mail.inReplyTo === messageId);
const count = async () => (await a.call("ops", "GET", "/api/messages?limit=200")).body.items.length;

async function sent(over: Record<string, unknown> = {}) {
  const m = (await a.call("author", "POST", "/api/messages", draft(over))).body;
  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest })).status).toBe(200);
  await a.until("sent", async () => (await get(m.id)).state === "sent");
  return m;
}

describe("the sender", () => {
  it("refuses a spoofed or unknown sender with a 400 naming from, and creates nothing", async () => {
    const before = await count();
    for (const from of [
      "CEO <ceo@corp.example> <comms@corp.example>",
      "ceo@corp.example, <comms@corp.example>",
      "Everyone: comms@corp.example;",
      '"ceo@corp.example" <comms@corp.example>',
      "ceo@corp.example",
    ]) {
      const r = await a.call("author", "POST", "/api/messages", draft({ from }));
      expect(r.status, from).toBe(400);
      expect(JSON.stringify(r.body.error.details), from).toContain("from");
    }
    expect(await count()).toBe(before);
  });

  it("sends as the configured mailbox with its configured display name, whatever name was typed", async () => {
    const m = await sent({ from: "The Boss <COMMS@corp.example>" });
    expect(m.from).toBe("Internal Communications <comms@corp.example>");
    const mail = originalsOf(m.messageId)[0]!.mail;
    expect(mail.from?.value).toEqual([{ name: "Internal Communications", address: "comms@corp.example" }]);
  });
});

describe("fail at submit, never at release", () => {
  it("refuses a subject with U+2028 (and other line breakers) naming the subject; nothing is created", async () => {
    const before = await count();
    for (const subject of ["Town hall\u2028Bcc: all", "Town\u2029hall", "Bad \ud800 surrogate", "Tab\there"]) {
      const r = await a.call("author", "POST", "/api/messages", draft({ subject }));
      expect(r.status, JSON.stringify(subject)).toBe(400);
      expect(r.body.error.details.map((d: { path: string[] }) => d.path.join("."))).toContain("body.subject");
    }
    expect(await count()).toBe(before);
  });
});

describe("approval of exactly one revision and digest", () => {
  it("requires the revision (400), refuses another revision or digest (409), and records the digest", async () => {
    const m = (await a.call("author", "POST", "/api/messages", draft())).body;
    expect(m.digest).toMatch(/^[0-9a-f]{64}$/);
    const missing = await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, {});
    expect(missing.status).toBe(400);
    expect(JSON.stringify(missing.body.error.details)).toContain("revision");
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 2 })).status).toBe(409);
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: "0".repeat(64) })).status).toBe(409);
    expect((await get(m.id)).approvals).toEqual([]);
    // The preview is built by the same function as the sent mail: same digest.
    const preview = await fetch(`${a.url}/api/messages/${m.id}/preview?part=text`, { headers: { authorization: "Bearer test-token-approver1-0123456789abcdef" } });
    expect(preview.headers.get("airlock-digest")).toBe(m.digest);
    expect(await preview.text()).toContain("Town hall on Friday at 10.");
    const ok = await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest });
    expect(ok.body.approvals).toEqual([expect.objectContaining({ by: "approver1@corp.example", digest: m.digest })]);
  });

  it("sends nothing when the stored message changed between approval and release: halted, audited", async () => {
    const m = (await a.call("author", "POST", "/api/messages", draft({ holdMinutes: 0.05 }))).body;
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest })).status).toBe(200);
    const redis = new Redis(a.redis.url);
    try {
      await redis.hset(keys.message(m.id), "text", "Town hall is cancelled. Delete the app.");
    } finally {
      redis.disconnect();
    }
    const halted = await a.until("halted", async () => {
      const cur = await get(m.id);
      return cur.paused ? cur : false;
    });
    expect(halted).toMatchObject({ state: "sending", paused: { by: "airlock" }, counts: { sent: 0, inFlight: 0 } });
    expect(halted.paused.reason).toContain("not sent");
    expect(halted.paused.reason).toContain(m.digest);
    expect(originalsOf(m.messageId)).toHaveLength(0);
    const events = (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string; actor: string; detail: string }>;
    expect(events.find((e) => e.action === "pause")).toMatchObject({ actor: "airlock" });
    // A resume builds and checks again: still not what was approved, halted again, nothing sent.
    expect((await a.call("ops", "POST", `/api/messages/${m.id}/resume`, {})).status).toBe(200);
    await a.until("halted again", async () => (await get(m.id)).paused !== null);
    // Recalled: nobody was handed it.
    expect((await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "tampered" })).body).toMatchObject({ state: "recalled", delivered: 0 });
    expect(originalsOf(m.messageId)).toHaveLength(0);
  });
});

describe("corrections", () => {
  it("sends the standard correction at once (within a second of the recall) without the reason", async () => {
    const m = await sent({ subject: "Standard correction" });
    const at = Date.now();
    expect((await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "secret internal reason" })).body).toMatchObject({ correction: { status: "standard" } });
    await a.until("corrected", async () => correctionsOf(m.messageId).flatMap((r) => r.to).length === team.length, 5000);
    expect(Math.max(...correctionsOf(m.messageId).map((r) => r.at)) - at).toBeLessThan(1000);
    const c = correctionsOf(m.messageId)[0]!.mail;
    expect(c.text).toContain("sent in error");
    expect(c.text).not.toContain("secret internal reason");
    expect(c.html).not.toContain("secret internal reason");
  });

  it("holds a custom text until someone other than the recaller decides: rejected, the standard correction goes", async () => {
    const m = await sent({ subject: "Rejected correction" });
    const r = await a.call("author", "POST", `/api/messages/${m.id}/recall`, { reason: "oops", correctionText: "Ignore the above, and also wire money to X." });
    expect(r.body).toMatchObject({ state: "correcting", correction: { status: "pending" } });
    expect((await a.call("author", "POST", `/api/messages/${m.id}/correction/reject`, { reason: "mine" })).status).toBe(403);
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/correction/reject`, {})).status).toBe(400);
    expect(correctionsOf(m.messageId)).toHaveLength(0);
    const rejected = await a.call("approver1", "POST", `/api/messages/${m.id}/correction/reject`, { reason: "not our wording" });
    expect(rejected.body.correction).toMatchObject({ status: "declined", rejection: { by: "approver1@corp.example", reason: "not our wording" } });
    await a.until("corrected", async () => (await get(m.id)).state === "corrected");
    const mails = correctionsOf(m.messageId);
    expect(mails.flatMap((x) => x.to).sort()).toEqual([...team].sort());
    for (const x of mails) expect(x.mail.text).not.toContain("wire money");
  });

  it("lets an admin approve a correction text written by someone else, not their own", async () => {
    const m = await sent({ subject: "Admin-approved correction" });
    const r = await a.call("author", "POST", `/api/messages/${m.id}/recall`, { reason: "oops", correctionText: "The earlier message was sent in error." });
    expect(r.body).toMatchObject({ state: "correcting", correction: { status: "pending" } });
    const ok = await a.call("admin", "POST", `/api/messages/${m.id}/correction/approve`, { digest: r.body.correction.digest });
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    await a.until("corrected", async () => (await get(m.id)).state === "corrected");
    expect(correctionsOf(m.messageId).every((x) => String(x.mail.text).includes("sent in error."))).toBe(true);

    const mine = await sent({ subject: "Admin's own correction" });
    const own = await a.call("admin", "POST", `/api/messages/${mine.id}/recall`, { reason: "oops", correctionText: "Mine." });
    expect(own.body.correction).toMatchObject({ status: "pending" });
    expect((await a.call("admin", "POST", `/api/messages/${mine.id}/correction/approve`, {})).status).toBe(403);
  });

  it("lets the recaller switch to the standard correction while the text waits", async () => {
    const m = await sent({ subject: "Switched correction" });
    await a.call("author", "POST", `/api/messages/${m.id}/recall`, { reason: "oops", correctionText: "Longer explanation." });
    expect((await a.call("author2", "POST", `/api/messages/${m.id}/correction/standard`, {})).status).toBe(403);
    expect((await a.call("author", "POST", `/api/messages/${m.id}/correction/standard`, {})).body.correction).toMatchObject({ status: "standard" });
    await a.until("corrected", async () => (await get(m.id)).state === "corrected");
    expect(correctionsOf(m.messageId).flatMap((x) => x.to)).toHaveLength(team.length);
    expect(correctionsOf(m.messageId).every((x) => !String(x.mail.text).includes("Longer explanation."))).toBe(true);
    // Decided: nothing is pending any more.
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/correction/approve`, {})).status).toBe(409);
  });

  it("refuses a correction text that cannot be mailed before recalling anything", async () => {
    const m = await sent({ subject: "Bad correction text" });
    const r = await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "oops", correctionText: "bad \u0007 bell" });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body.error.details)).toContain("correctionText");
    expect((await get(m.id)).state).toBe("sent");
  });
});
