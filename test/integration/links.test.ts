/**
 * Approvers act from their mailbox: the approval request is read from the real SMTP sink and its
 * links are followed like a person (and like a mail scanner) would.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Received } from "../support/smtp-sink.js";
import { startAirlock, tokenOf, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";

let a: TestAirlock;
const team = ["ann@corp.example", "ben@corp.example", "cat@corp.example"];
let seq = 0;

beforeAll(async () => {
  a = await startAirlock({ APPROVAL_TTL_HOURS: "1", HOLD_MIN_SECONDS: "600" });
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: team.map((email) => ({ email })) })).status).toBe(201);
});
afterAll(async () => a?.stop());

/** A message with a subject no other test uses, so its notifications can be told apart. */
async function submit(by: UserKey = "author", over: Record<string, unknown> = {}) {
  const subject = `Policy update ${++seq}`;
  const r = await a.call(by, "POST", "/api/messages", { subject, text: "Please read the attached policy.\n\nThanks.", audience: { lists: ["team"] }, ...over });
  expect(r.status).toBe(201);
  return r.body as { id: string; subject: string; revision: number; messageId: string };
}

const mails = (to: string, subjectHas: string) => a.sink.received.filter((r) => r.to.includes(to) && (r.mail.subject ?? "").includes(subjectHas));

function tokensIn(r: Received): string[] {
  return [...(r.mail.text ?? "").matchAll(/\/links\/([A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})/g)].map((m) => m[1]!);
}

async function page(method: string, token: string, form?: Record<string, string>, headers: Record<string, string> = {}) {
  const res = await fetch(`${a.url}/links/${token}`, { method, headers, body: form ? new URLSearchParams(form) : undefined });
  return { status: res.status, html: await res.text(), headers: res.headers };
}

/** The digest the confirmation page shows (its form's hidden field): an approval names it. */
const digestOnPage = (html: string) => /name="digest" value="([0-9a-f]{64})"/.exec(html)?.[1];

/** Approves as a person does: opens the page, then posts its form (with the digest it shows). */
async function approveVia(token: string, form: Record<string, string> = {}, headers: Record<string, string> = {}) {
  const digest = digestOnPage((await page("GET", token)).html);
  if (!digest) throw new Error("no digest on the approval page");
  return page("POST", token, { action: "approve", digest, ...form }, headers);
}

const actionOnPage = (html: string) => /name="action"[^>]*value="(\w+)"|value="(\w+)"[^>]*name="action"/.exec(html)?.slice(1).find(Boolean);

/** Waits for the mail to `to` about `subject` whose subject contains `kind`, and returns its link for `action`. */
async function linkFor(to: string, subject: string, kind: string, action: string, nth = 0): Promise<string> {
  const mail = await a.until(`${kind} mail to ${to}`, () => mails(to, subject).filter((m) => m.mail.subject!.includes(kind))[nth]);
  for (const token of tokensIn(mail)) {
    const p = await page("GET", token);
    if (actionOnPage(p.html) === action) return token;
  }
  throw new Error(`no ${action} link in the ${kind} mail to ${to}`);
}

/** Everything a link could change about a message (notification entries excepted: they record mail, not decisions). */
async function snapshot(id: string) {
  const m = (await a.call("ops", "GET", `/api/messages/${id}`)).body;
  const events = (await a.call("ops", "GET", `/api/messages/${id}/events`)).body.items as Array<{ entryId: string; action: string }>;
  return {
    state: m.state,
    revision: m.revision,
    approvals: m.approvals,
    updatedAt: m.updatedAt,
    rejection: m.rejection,
    recall: m.recall,
    decisions: events.filter((e) => !e.action.startsWith("notify")).map((e) => `${e.entryId} ${e.action}`),
  };
}

describe("approval request email", () => {
  it("goes to every approver but the author, and shows what will go out", async () => {
    const m = await submit();
    const req = await a.until("request to approver1", () => mails(USERS.approver1.email, m.subject)[0]);
    await a.until("request to approver2", () => mails(USERS.approver2.email, m.subject)[0]);
    // both@ holds the approver role and is not the author: asked too.
    await a.until("request to both", () => mails(USERS.authorApprover.email, m.subject)[0]);
    expect(req.mail.subject).toBe(`[Airlock] Approval needed: ${m.subject}`);
    const text = req.mail.text!;
    expect(text).toContain("Please read the attached policy.");
    expect(text).toContain("team");
    expect(text).toMatch(/\b3\b/); // recipients
    expect(text).toContain(`/messages/${m.id}`);
    expect(tokensIn(req)).toHaveLength(2);
    expect(req.mail.html).toContain("Approve");
    expect(req.mail.html).toContain("Reject");
    // Nobody asks the author to approve their own message.
    expect(mails(USERS.author.email, m.subject)).toHaveLength(0);
    // The sink has a mail before the worker hears its 250 and records it: wait for the entries.
    const notified = await a.until("three notify entries", async () => {
      const items = (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items.filter((e: { action: string }) => e.action === "notify");
      return items.length === 3 && items;
    });
    expect(notified.map((e: { detail: string }) => JSON.parse(e.detail).to).sort()).toEqual(
      [USERS.approver1.email, USERS.approver2.email, USERS.authorApprover.email].sort(),
    );
  });

  it("is not sent to the author when the author is also an approver, and a link for them refuses", async () => {
    const m = await submit("authorApprover");
    await a.until("request to approver1", () => mails(USERS.approver1.email, m.subject)[0]);
    await a.until("request to approver2", () => mails(USERS.approver2.email, m.subject)[0]);
    // Give the notify worker time to have sent anything else it would send.
    await a.until("notifications recorded", async () => (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items.filter((e: { action: string }) => e.action === "notify").length === 2);
    expect(mails(USERS.authorApprover.email, m.subject)).toHaveLength(0);

    // Even a token made out to the author (which Airlock never sends) cannot approve.
    const token = await a.rt.tokens.issue({ user: USERS.authorApprover.email, message: m.id, revision: 1, action: "approve", expiresAt: a.clock.now() + 3600_000 });
    const before = await snapshot(m.id);
    expect((await page("GET", token)).status).toBe(403);
    const post = await page("POST", token, { action: "approve" });
    expect(post.status).toBe(403);
    expect(post.html).toContain("Nobody approves their own message");
    expect(await snapshot(m.id)).toEqual(before);
  });
});

describe("following the links", () => {
  it("GET, HEAD and a GET with doubled parameters change nothing; the POST approves, once", async () => {
    const m = await submit();
    const token = await linkFor(USERS.approver1.email, m.subject, "Approval needed", "approve");
    const before = await snapshot(m.id);

    const get = await page("GET", token);
    expect(get.status).toBe(200);
    expect(get.html).toContain("<form");
    expect(get.html).toContain(m.subject);
    expect(get.headers.get("cache-control")).toBe("no-store");
    const head = await page("HEAD", token);
    expect(head.status).toBe(200);
    expect(head.html).toBe("");
    const doubled = await fetch(`${a.url}/links/${token}?action=approve&action=approve&confirm=1&confirm=1`);
    expect(doubled.status).toBe(200);
    expect(await snapshot(m.id)).toEqual(before);
    // The link record is still unused after all that reading.
    expect(await a.rt.redis.hget(`{airlock}:link:${token.split(".")[0]}`, "usedAt")).toBeNull();

    const post = await approveVia(token, { comment: "fine by me" });
    expect(post.status).toBe(200);
    expect(post.html).toContain("Approved");
    const after = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
    expect(after.state).toBe("scheduled");
    expect(after.approvals).toEqual([expect.objectContaining({ by: USERS.approver1.email, comment: "fine by me" })]);

    // Replay: the same POST again is refused and changes nothing.
    const approved = await snapshot(m.id);
    const replay = await page("POST", token, { action: "approve" });
    expect(replay.status).toBe(410);
    expect(replay.html).toContain("already used");
    expect((await page("GET", token)).status).toBe(410);
    expect(await snapshot(m.id)).toEqual(approved);
  });

  it("refuses a tampered token, changing nothing", async () => {
    const m = await submit();
    const token = await linkFor(USERS.approver1.email, m.subject, "Approval needed", "approve");
    const before = await snapshot(m.id);
    const [id, mac] = token.split(".") as [string, string];
    const flip = (s: string, i: number) => s.slice(0, i) + (s[i] === "A" ? "B" : "A") + s.slice(i + 1);
    // The last character with its lowest bit flipped: those bits carry no MAC bits (256 = 42 × 6 + 4), so
    // comparing decoded bytes would accept it; only comparing the text refuses it.
    const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const lastChar = (s: string) => s.slice(0, -1) + B64[B64.indexOf(s.at(-1)!) ^ 1];
    for (const bad of [`${id}.${flip(mac, 5)}`, `${id}.${lastChar(mac)}`, `${flip(id, 3)}.${mac}`, `${id}.${mac}x`, "nonsense", `${id}`]) {
      const g = await page("GET", bad);
      expect(g.status, bad).toBe(404);
      expect(g.html).toContain("not valid");
      expect((await page("POST", bad, { action: "approve" })).status, bad).toBe(404);
    }
    // A stored grant edited in Redis (say, to another approver) no longer matches its MAC.
    await a.rt.redis.hset(`{airlock}:link:${id}`, "user", USERS.approver2.email);
    expect((await page("POST", token, { action: "approve" })).status).toBe(404);
    await a.rt.redis.hset(`{airlock}:link:${id}`, "user", USERS.approver1.email);
    expect(await snapshot(m.id)).toEqual(before);
    // Restored, the untouched token still works: nothing above consumed it.
    expect((await approveVia(token)).status).toBe(200);
  });

  it("refuses an approve token used for recall, and a reject token used to approve", async () => {
    const m = await submit();
    const approveToken = await linkFor(USERS.approver2.email, m.subject, "Approval needed", "approve");
    const rejectToken = await linkFor(USERS.approver2.email, m.subject, "Approval needed", "reject");
    const before = await snapshot(m.id);
    const recall = await page("POST", approveToken, { action: "recall", reason: "gotcha" });
    expect(recall.status).toBe(403);
    expect(recall.html).toContain("can only approve");
    const approve = await page("POST", rejectToken, { action: "approve" });
    expect(approve.status).toBe(403);
    expect(await snapshot(m.id)).toEqual(before);
  });

  it("refuses another approver's token when someone else is signed in, and acts only in the holder's name", async () => {
    const m = await submit();
    const token = await linkFor(USERS.approver1.email, m.subject, "Approval needed", "approve");
    const before = await snapshot(m.id);
    const other = await page("POST", token, { action: "approve" }, { authorization: `Bearer ${tokenOf("approver2")}` });
    expect(other.status).toBe(403);
    expect(other.html).toContain("sent to someone else");
    // The same when approver2 is signed in to the dashboard in this browser (session cookie).
    const signin = await fetch(`${a.url}/signin`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" },
      body: new URLSearchParams({ token: tokenOf("approver2") }),
    });
    const cookie = (signin.headers.get("set-cookie") ?? "").split(";")[0]!;
    expect(cookie).toMatch(/^airlock_session=/);
    const viaSession = await page("POST", token, { action: "approve" }, { cookie });
    expect(viaSession.status).toBe(403);
    expect(viaSession.html).toContain("sent to someone else");
    expect(await snapshot(m.id)).toEqual(before);
    // Forwarded without a sign-in, it still can only approve as approver1: never a second approval.
    expect((await approveVia(token)).status).toBe(200);
    const after = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
    expect(after.approvals.map((x: { by: string }) => x.by)).toEqual([USERS.approver1.email]);
  });

  it("refuses the token of a previous revision after an edit; the new request's token works", async () => {
    const m = await submit();
    const old = await linkFor(USERS.approver1.email, m.subject, "Approval needed", "approve");
    const edited = await a.call("author", "PUT", `/api/messages/${m.id}`, { subject: m.subject, text: "Corrected policy text.", audience: { lists: ["team"] } });
    expect(edited.status).toBe(200);
    expect(edited.body.revision).toBe(2);
    const before = await snapshot(m.id);
    const g = await page("GET", old);
    expect(g.status).toBe(409);
    expect(g.html).toContain("revision 2");
    expect((await page("POST", old, { action: "approve" })).status).toBe(409);
    expect(await snapshot(m.id)).toEqual(before);

    // The request for revision 2 shows what changed.
    const second = await a.until("second request", () => mails(USERS.approver1.email, m.subject)[1]);
    expect(second.mail.text).toContain("Corrected policy text.");
    expect(second.mail.text).toMatch(/^- .*Please read the attached policy\./m);
    const fresh = await linkFor(USERS.approver1.email, m.subject, "Approval needed", "approve", 1);
    expect((await approveVia(fresh)).status).toBe(200);
    expect((await a.call("ops", "GET", `/api/messages/${m.id}`)).body).toMatchObject({ state: "scheduled", revision: 2 });
  });

  it("rejects with a reason (asked again when missing, token kept) and tells the author", async () => {
    const m = await submit();
    const token = await linkFor(USERS.approver2.email, m.subject, "Approval needed", "reject");
    const before = await snapshot(m.id);
    const missing = await page("POST", token, { action: "reject", reason: "   " });
    expect(missing.status).toBe(400);
    expect(missing.html).toContain("<form");
    expect(await snapshot(m.id)).toEqual(before);
    const done = await page("POST", token, { action: "reject", reason: "Wrong audience" });
    expect(done.status).toBe(200);
    expect(done.html).toContain("Rejected");
    expect((await a.call("ops", "GET", `/api/messages/${m.id}`)).body.rejection).toMatchObject({ by: USERS.approver2.email, reason: "Wrong audience" });
    const notice = await a.until("rejected notice", () => mails(USERS.author.email, m.subject).find((r) => r.mail.subject!.startsWith("[Airlock] Rejected")));
    expect(notice.mail.text).toContain("Wrong audience");
  });

  it("refuses a cross-site POST and a POST that is not the form", async () => {
    const m = await submit();
    const token = await linkFor(USERS.approver1.email, m.subject, "Approval needed", "approve");
    const before = await snapshot(m.id);
    expect((await page("POST", token, { action: "approve" }, { "sec-fetch-site": "cross-site" })).status).toBe(403);
    const json = await fetch(`${a.url}/links/${token}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ action: "approve" }) });
    expect(json.status).toBe(415);
    const twice = await fetch(`${a.url}/links/${token}`, { method: "POST", body: new URLSearchParams([["action", "approve"], ["action", "approve"]]) });
    expect(twice.status).toBe(400);
    expect(await twice.text()).toContain("Send the confirmation form once");
    const crowded = await fetch(`${a.url}/links/${token}`, { method: "POST", body: new URLSearchParams(Array.from({ length: 50 }, (_, i) => [`f${i}`, "x"])) });
    expect(crowded.status).toBe(413);
    expect(crowded.headers.get("content-type")).toMatch(/text\/html/);
    expect(await snapshot(m.id)).toEqual(before);
  });
});

describe("after approval", () => {
  it("tells author and approver when it goes out, with a recall link that works once, then reports the recall", async () => {
    const m = await submit();
    const approve = await linkFor(USERS.approver1.email, m.subject, "Approval needed", "approve");
    expect((await approveVia(approve)).status).toBe(200);

    for (const who of [USERS.author.email, USERS.approver1.email]) {
      const notice = await a.until(`scheduled notice to ${who}`, () => mails(who, m.subject).find((r) => r.mail.subject!.includes("Going out at")));
      expect(notice.mail.subject).toMatch(/Going out at \d\d:\d\d UTC to 3 recipients/);
      expect(notice.mail.text).toMatch(/in (9|10) minutes/); // a 10-minute hold, rendered a moment after approval
    }
    const recall = await linkFor(USERS.author.email, m.subject, "Going out at", "recall");
    const g = await page("GET", recall);
    expect(g.status).toBe(200);
    expect(g.html).toContain("Recall");
    expect((await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state).toBe("scheduled");

    const noReason = await page("POST", recall, { action: "recall" });
    expect(noReason.status).toBe(400);
    const done = await page("POST", recall, { action: "recall", reason: "Wrong date in the text", correctionText: "" });
    expect(done.status).toBe(200);
    expect(done.html).toContain("Nobody received it");
    expect((await a.call("ops", "GET", `/api/messages/${m.id}`)).body).toMatchObject({ state: "recalled", recall: { by: USERS.author.email } });

    const recalledNotice = await a.until("recalled notice", () => mails(USERS.approver1.email, m.subject).find((r) => r.mail.subject!.startsWith("[Airlock] Recalled")));
    expect(recalledNotice.mail.text).toContain("Wrong date in the text");
    // The approver's own recall link now says there is nothing left to recall (the message is terminal).
    const [approverRecall] = tokensIn(mails(USERS.approver1.email, m.subject).find((r) => r.mail.subject!.includes("Going out at"))!);
    const late = await page("GET", approverRecall!);
    expect(late.status).toBe(410);
    expect(late.html).toContain("nothing left to recall");
  });
});

describe("reminders and expiry", () => {
  it("reminds approvers who have not acted at half the TTL, then expires the message and tells the author", async () => {
    const m = await submit();
    await a.until("request", () => mails(USERS.approver2.email, m.subject)[0]);
    a.clock.advance(31 * 60_000); // past half of APPROVAL_TTL_HOURS=1
    const reminder = await a.until("reminder", () => mails(USERS.approver2.email, m.subject).find((r) => r.mail.subject!.includes("Reminder")), 20_000);
    expect(tokensIn(reminder)).toHaveLength(2);
    const events = (await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string }>;
    expect(events.filter((e) => e.action === "remind")).toHaveLength(1);

    const token = tokensIn(reminder)[0]!;
    a.clock.advance(30 * 60_000); // past the TTL
    const expired = await page("GET", token);
    expect(expired.status).toBe(410);
    expect(expired.html).toContain("expired");
    await a.until("expired", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "expired", 20_000);
    const notice = await a.until("expiry notice", () => mails(USERS.author.email, m.subject).find((r) => r.mail.subject!.includes("Expired")));
    expect(notice.mail.text).toMatch(/nothing was sent/i);
  });
});

describe("notification failures", () => {
  it("are recorded and never block the message", async () => {
    a.sink.behaviour.rcpt = (address) => (address === USERS.approver1.email ? { code: 550, message: "mailbox unavailable" } : null);
    try {
      const m = await submit();
      const failed = await a.until("notifyFailed", async () =>
        ((await a.call("ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string; detail: string }>).find((e) => e.action === "notifyFailed"),
      );
      expect(JSON.parse(failed.detail)).toMatchObject({ kind: "approval_request", to: USERS.approver1.email });
      expect(JSON.parse(failed.detail).reply).toContain("550");
      expect((await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).body.state).toBe("scheduled");
    } finally {
      a.sink.behaviour.rcpt = undefined;
    }
  });
});

describe("rate limits", () => {
  it("answers 429 past the per-client limit, as a page for links and as the API's error body", async () => {
    const b = await startAirlock({ LINK_RATE_LIMIT_PER_MINUTE: "3", API_RATE_LIMIT_PER_MINUTE: "5" });
    try {
      const statuses = [];
      for (let i = 0; i < 4; i++) statuses.push((await fetch(`${b.url}/links/nonsense`)).status);
      expect(statuses).toEqual([404, 404, 404, 429]);
      const api = [];
      for (let i = 0; i < 6; i++) api.push(await b.call("ops", "GET", "/api/messages"));
      expect(api.map((r) => r.status)).toEqual([200, 200, 200, 200, 200, 429]);
      expect(api[5]!.body).toEqual({ error: { code: "rate_limited", message: expect.any(String) } });
    } finally {
      await b.stop();
    }
  });
});
