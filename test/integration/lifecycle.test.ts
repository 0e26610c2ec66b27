import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Redis } from "ioredis";
import { keys } from "../../src/store/keys.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const team = ["ann@corp.example", "ben@corp.example", "cat@corp.example"];
const big = Array.from({ length: 10 }, (_, i) => `big${i}@corp.example`);

beforeAll(async () => {
  a = await startAirlock({ LARGE_AUDIENCE_THRESHOLD: "10", RECIPIENTS_PER_TRANSACTION: "50" });
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: team.map((email) => ({ email })) })).status).toBe(201);
  expect((await a.call("author", "POST", "/api/audiences", { name: "all-employees", recipients: big.map((email) => ({ email })) })).status).toBe(201);
});
afterAll(async () => a?.stop());

const draft = (over: Record<string, unknown> = {}) => ({
  subject: "Delete the app from your phone",
  text: "Please remove the app from every phone with company mail.",
  audience: { lists: ["team"], addresses: ["Dan@Corp.example", "ann@corp.example"] },
  ...over,
});

const originalsOf = (messageId: string) => a.sink.received.filter((r) => r.mail.messageId === messageId);
const correctionsOf = (messageId: string) => a.sink.received.filter((r) => r.mail.inReplyTo === messageId);

describe("the safeguard pipeline", () => {
  it("freezes one list as it is, and several lists plus addresses as their union, each address once", async () => {
    const one = (await a.call("author", "POST", "/api/messages", draft({ audience: { lists: ["all-employees"] } }))).body;
    expect(one.recipientCount).toBe(big.length);
    const union = (await a.call("author", "POST", "/api/messages", draft({ audience: { lists: ["team", "all-employees"], addresses: ["big3@corp.example", "Zed@corp.example"] } }))).body;
    expect(union.recipientCount).toBe(team.length + big.length + 1);
    const listed = (await a.call("ops", "GET", `/api/messages/${union.id}/recipients?limit=100`)).body.items.map((r: { email: string }) => r.email);
    expect(listed.sort()).toEqual([...team, ...big, "zed@corp.example"].sort());
    for (const m of [one, union]) expect((await a.call("author", "POST", `/api/messages/${m.id}/withdraw`, {})).status).toBe(200);
  });

  it("freezes several lists larger than one slice, whichever is largest, each address once", async () => {
    // 2,500 and 1,800 addresses overlapping by 300: the largest is copied, the other added 1,000 at a time.
    const p = (i: number) => `p${String(i).padStart(5, "0")}@corp.example`;
    const csvOf = (from: number, to: number) => "email\n" + Array.from({ length: to - from }, (_, i) => p(from + i)).join("\n");
    expect((await a.call("author", "POST", "/api/audiences?name=slice-big", csvOf(0, 2500), { "content-type": "text/csv" })).status).toBe(201);
    expect((await a.call("author", "POST", "/api/audiences?name=slice-small", csvOf(2200, 4000), { "content-type": "text/csv" })).status).toBe(201);
    const m = (await a.call("author", "POST", "/api/messages", draft({ audience: { lists: ["slice-small", "slice-big"], addresses: [p(3999), p(4000)] } }))).body;
    expect(m.recipientCount).toBe(4001);
    const frozen = new Redis(a.redis.url);
    try {
      expect(await frozen.zrange(keys.recipients(m.id), 0, "-1")).toEqual(Array.from({ length: 4001 }, (_, i) => p(i)));
    } finally {
      frozen.disconnect();
    }
    expect((await a.call("author", "POST", `/api/messages/${m.id}/withdraw`, {})).status).toBe(200);
  });

  it("submits, approves, holds, sends once per recipient, recalls and sends one threaded correction", async () => {
    const created = await a.call("author", "POST", "/api/messages", draft());
    expect(created.status).toBe(201);
    const m = created.body;
    expect(m).toMatchObject({ state: "pending_approval", revision: 1, recipientCount: 4, requiredApprovals: 1, author: "author@corp.example" });

    const approved = await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, comment: "ok" });
    expect(approved.status).toBe(200);
    expect(approved.body.state).toBe("scheduled");
    const releaseAt = Date.parse(approved.body.releaseAt);
    expect(releaseAt).toBeGreaterThanOrEqual(Date.parse(approved.body.approvals[0].at) + 1000);

    const sent = await a.until("sent", async () => {
      const r = await a.call("ops", "GET", `/api/messages/${m.id}`);
      return r.body.state === "sent" && r.body;
    });
    expect(sent.counts).toMatchObject({ sent: 4, failed: 0, skipped: 0, queued: 0 });

    const originals = originalsOf(m.messageId);
    expect(originals).toHaveLength(1); // 4 recipients, up to 50 per transaction: one transaction
    expect(originals[0]!.at).toBeGreaterThanOrEqual(releaseAt);
    expect(originals[0]!.to.sort()).toEqual([...team, "dan@corp.example"].sort());
    const headers = originals[0]!.mail.headers;
    expect(headers.get("auto-submitted")).toBe("auto-generated");
    expect(headers.get("x-auto-response-suppress")).toBe("All");
    expect(originals[0]!.mail.subject).toBe("Delete the app from your phone");

    const recalled = await a.call("author", "POST", `/api/messages/${m.id}/recall`, { reason: "sent in error", correctionText: "Keep the app." });
    expect(recalled.status).toBe(200);
    expect(recalled.body).toMatchObject({ state: "correcting", delivered: 4, correction: { status: "pending", text: "Keep the app.", required: 1 } });

    // The custom text waits for a second person: the recaller may not approve it, nobody gets it meanwhile.
    const own = await a.call("author", "POST", `/api/messages/${m.id}/correction/approve`, {});
    expect(own.status).toBe(403);
    const preview = await fetch(`${a.url}/api/messages/${m.id}/preview?of=correction&part=text`, { headers: { authorization: "Bearer test-token-approver2-0123456789abcdef" } });
    expect(await preview.text()).toContain("Keep the app.");
    const digest = preview.headers.get("airlock-digest")!;
    expect(digest).toBe(recalled.body.correction.digest);
    expect(correctionsOf(m.messageId)).toHaveLength(0);
    expect((await a.call("approver2", "POST", `/api/messages/${m.id}/correction/approve`, { digest: "0".repeat(64) })).status).toBe(409);
    const decided = await a.call("approver2", "POST", `/api/messages/${m.id}/correction/approve`, { digest });
    expect(decided.status).toBe(200);
    expect(decided.body.correction).toMatchObject({ status: "approved", approvals: [{ by: "approver2@corp.example", digest }] });

    const corrected = await a.until("corrected", async () => {
      const r = await a.call("ops", "GET", `/api/messages/${m.id}`);
      return r.body.state === "corrected" && r.body;
    });
    expect(corrected.counts.corrected).toBe(4);
    const corrections = correctionsOf(m.messageId);
    expect(corrections.flatMap((c) => c.to).sort()).toEqual([...team, "dan@corp.example"].sort());
    const c = corrections[0]!.mail;
    expect(c.subject).toBe("Correction: Delete the app from your phone");
    expect(c.references === m.messageId || (Array.isArray(c.references) && c.references.includes(m.messageId))).toBe(true);
    expect(c.text).toContain("sent in error");
    expect(c.text).toContain("Keep the app.");

    // A second recall sends no second correction.
    expect((await a.call("approver2", "POST", `/api/messages/${m.id}/recall`, { reason: "again" })).status).toBe(409);

    const events = (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items.map((e: { action: string }) => e.action);
    // Decisions in order; notifications (sent by another worker, interleaved in time) are recorded too.
    expect(events.filter((e: string) => !e.startsWith("notify"))).toEqual(["submit", "approve", "release", "finish", "recall", "correctionDigest", "approveCorrection", "startCorrection", "finishCorrection"]);
    expect(events).toContain("notify");
  });

  it("recalled during the hold, sends nothing at all", async () => {
    const m = (await a.call("author", "POST", "/api/messages", draft({ subject: "Hold me back", holdMinutes: 0.05 }))).body;
    const approved = await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
    expect(approved.body.state).toBe("scheduled");
    const recalled = await a.call("author", "POST", `/api/messages/${m.id}/recall`, { reason: "wrong list" });
    expect(recalled.body).toMatchObject({ state: "recalled", delivered: 0 });

    // Wait until the release job has fired and been processed, then check nothing went out.
    const releaseJob = `release-${m.id}-1-${Date.parse(approved.body.releaseAt)}`;
    await a.until("release job processed", async () => Date.now() > Date.parse(approved.body.releaseAt) && !(await a.rt.scheduler.timers.getJob(releaseJob)));
    await a.rt.service.get({ email: "ops@corp.example", name: "", roles: ["ops"], senders: [], credential: "" }, m.id);
    expect(originalsOf(m.messageId)).toHaveLength(0);
    const after = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
    expect(after).toMatchObject({ state: "recalled", counts: { sent: 0, skipped: 4 } });
  });

  it("refuses self-approval, even to a user who is both author and approver", async () => {
    const m = (await a.call("authorApprover", "POST", "/api/messages", draft())).body;
    const r = await a.call("authorApprover", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
    expect(r.status).toBe(403);
    expect(r.body.error.code).toBe("self_approval");
    expect((await a.call("authorApprover", "GET", `/api/messages/${m.id}`)).body.approvals).toEqual([]);
  });

  it("needs two distinct approvers for a large audience, and an edit clears approvals", async () => {
    const m = (await a.call("author", "POST", "/api/messages", draft({ audience: { lists: ["all-employees"] } }))).body;
    expect(m.requiredApprovals).toBe(2);
    const first = await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
    expect(first.body).toMatchObject({ state: "pending_approval", approvals: [{ by: "approver1@corp.example" }] });
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(409);

    const edited = await a.call("author", "PUT", `/api/messages/${m.id}`, draft({ subject: "Fixed subject", audience: { lists: ["all-employees"] } }));
    expect(edited.status).toBe(200);
    expect(edited.body).toMatchObject({ revision: 2, approvals: [], state: "pending_approval", subject: "Fixed subject" });

    // An approval of the old revision is refused.
    expect((await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(409);
    await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 2 });
    const second = await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 2 });
    expect(second.body.state).toBe("scheduled");
    await a.until("sent", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "sent");
    expect(originalsOf(m.messageId).flatMap((r) => r.to).sort()).toEqual([...big].sort());
    expect(originalsOf(m.messageId).every((r) => r.mail.subject === "Fixed subject")).toBe(true);
  });

  it("answers 409 for a transition the state does not allow, and changes nothing", async () => {
    const m = (await a.call("author", "POST", "/api/messages", draft())).body;
    expect((await a.call("author", "POST", `/api/messages/${m.id}/withdraw`)).body.state).toBe("withdrawn");
    for (const [user, path, body] of [
      ["approver1", "approve", { revision: 1 }],
      ["approver1", "reject", { reason: "no" }],
      ["author", "withdraw", undefined],
      ["ops", "recall", { reason: "x" }],
    ] as const) {
      const r = await a.call(user, "POST", `/api/messages/${m.id}/${path}`, body);
      expect(r.status, path).toBe(409);
      expect(r.body.error.code).toBe("conflict");
    }
    expect((await a.call("ops", "GET", `/api/messages/${m.id}`)).body).toMatchObject({ state: "withdrawn", revision: 1, approvals: [] });
  });

  it("lets a rejected message be edited into a new revision", async () => {
    const m = (await a.call("author", "POST", "/api/messages", draft())).body;
    const rejected = await a.call("approver1", "POST", `/api/messages/${m.id}/reject`, { reason: "tone" });
    expect(rejected.body).toMatchObject({ state: "rejected", rejection: { by: "approver1@corp.example", reason: "tone" } });
    const edited = await a.call("author", "PUT", `/api/messages/${m.id}`, draft({ subject: "Better tone" }));
    expect(edited.body).toMatchObject({ state: "pending_approval", revision: 2 });
    // Another author may not edit it.
    expect((await a.call("author2", "PUT", `/api/messages/${m.id}`, draft())).status).toBe(403);
  });

  it("refuses a sender the author is not allowed, and allows a listed one", async () => {
    const r = await a.call("author", "POST", "/api/messages", draft({ from: "CEO <ceo@corp.example>" }));
    expect(r.status).toBe(400);
    expect(r.body.error.details).toEqual([{ path: ["body", "from"], message: expect.stringContaining("not one of your sender mailboxes") }]);
    const ok = await a.call("authorApprover", "POST", "/api/messages", draft({ from: "CEO <ceo@corp.example>" }));
    expect(ok.status).toBe(201);
    expect(ok.body.from).toBe("CEO <ceo@corp.example>");
  });

  it("sends one correction when two recalls race", async () => {
    const m = (await a.call("author", "POST", "/api/messages", draft({ subject: "Race" }))).body;
    await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
    await a.until("sent", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "sent");
    const answers = await Promise.all([
      a.call("author", "POST", `/api/messages/${m.id}/recall`, { reason: "one" }),
      a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "two" }),
      a.call("approver2", "POST", `/api/messages/${m.id}/recall`, { reason: "three" }),
    ]);
    expect(answers.map((r) => r.status).sort()).toEqual([200, 409, 409]);
    await a.until("corrected", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "corrected");
    expect(correctionsOf(m.messageId).flatMap((r) => r.to)).toHaveLength(4);
  });

  it("expires a message nobody approved within the approval TTL, and refuses approving it", async () => {
    const m = (await a.call("author", "POST", "/api/messages", draft({ subject: "Forgotten" }))).body;
    expect(Date.parse(m.expiresAt) - Date.parse(m.createdAt)).toBe(72 * 3600_000);
    a.clock.advance(72 * 3600_000 + 1000); // the sweep (every 5 s) sees it due on the injected clock
    try {
      await a.until("expired", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "expired", 20_000);
    } finally {
      a.clock.offsetMs = 0;
    }
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(409);
    // The expiry notification's own audit entry (written by another worker) may come before or
    // after this read: find the state change, do not assume its position in the trail.
    const events = (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<Record<string, string>>;
    const decisions = events.filter((e) => !e.action!.startsWith("notify"));
    expect(decisions.map((e) => e.action)).toEqual(["submit", "expire"]);
    expect(decisions.at(-1)).toMatchObject({ action: "expire", actor: "scheduler", from: "pending_approval", to: "expired" });
  });

  it("previews exactly the rendered message, escaping author content", async () => {
    const m = (await a.call("author", "POST", "/api/messages", draft({ subject: "<b>Bold</b> & co", text: "<script>alert(1)</script>" }))).body;
    const res = await fetch(`${a.url}/api/messages/${m.id}/preview`, { headers: { authorization: "Bearer test-token-approver1-0123456789abcdef" } });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-security-policy")).toContain("sandbox");
    const html = await res.text();
    expect(html).not.toContain("<script>alert(1)</script>");
    expect(html).toContain("&lt;script&gt;");
  });

  it("answers 401 without a token, 404 for unknown messages, 400 naming bad fields", async () => {
    expect((await a.call(null, "GET", "/api/messages")).status).toBe(401);
    expect((await a.call("ops", "GET", "/api/messages/999999")).status).toBe(404);
    const bad = await a.call("author", "POST", "/api/messages", { subject: "a\r\nBcc: evil@x.com", text: "", audience: { addresses: ['"a,b@evil.com"@corp.com'] } });
    expect(bad.status).toBe(400);
    const paths = bad.body.error.details.map((d: { path: string[] }) => d.path.join("."));
    expect(paths).toEqual(expect.arrayContaining(["body.subject", "body.text", "body.audience.addresses.0"]));
    expect((await a.call("ops", "GET", "/api/messages?limit=5&limit=6")).status).toBe(400);
    expect((await a.call("author", "POST", "/api/messages", "subject=x", { "content-type": "application/x-www-form-urlencoded" })).status).toBe(415);
  });
});
