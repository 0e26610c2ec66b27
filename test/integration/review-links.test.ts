/**
 * Every part is reviewed, exactly as sent (SPEC "Policies", "Approver links", promise 7), against
 * the real service, Redis and SMTP sink: the approval request and the link page show both parts
 * as the fan-out builds them, with the digest; an approval through the page names that digest and
 * is refused when the message changed in between; a custom correction text is approved or rejected
 * from the mail; and a halt by Airlock is mailed to ops.
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keys } from "../../src/store/keys.js";
import type { Received } from "../support/smtp-sink.js";
import { startAirlock, USERS, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const team = ["ann@corp.example", "ben@corp.example", "cat@corp.example", "dan@eu.corp.example"];
let seq = 0;

beforeAll(async () => {
  a = await startAirlock({ HOLD_MIN_SECONDS: "1" });
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: team.map((email) => ({ email })) })).status).toBe(201);
});
afterAll(async () => a?.stop());

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
const mails = (to: string, subjectHas: string) => a.sink.received.filter((r) => r.to.includes(to) && (r.mail.subject ?? "").includes(subjectHas));
const originalsOf = (messageId: string) => a.sink.received.filter((r) => r.mail.messageId === messageId);
const correctionsOf = (messageId: string) => a.sink.received.filter((r) => r.mail.inReplyTo === messageId);
const tokensIn = (r: Received) => [...(r.mail.text ?? "").matchAll(/\/links\/([A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})/g)].map((m) => m[1]!);
const decisions = async (id: string) =>
  ((await a.call("ops", "GET", `/api/messages/${id}/events`)).body.items as Array<{ entryId: string; action: string }>).filter((e) => !e.action.startsWith("notify")).map((e) => `${e.entryId} ${e.action}`);

async function page(method: string, token: string, form?: Record<string, string>) {
  const res = await fetch(`${a.url}/links/${token}`, { method, body: form ? new URLSearchParams(form) : undefined });
  return { status: res.status, html: await res.text() };
}
const onPage = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];
const unescape = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&#x3D;/g, "=").replace(/&#x60;/g, "`").replace(/&amp;/g, "&");

/** The link in the mail to `to` about `subject` (whose subject has `kind`) whose page offers `action`. */
async function linkFor(to: string, subject: string, kind: string, action: string): Promise<{ token: string; mail: Received }> {
  const mail = await a.until(`${kind} mail to ${to}`, () => mails(to, subject).find((m) => m.mail.subject!.includes(kind)));
  for (const token of tokensIn(mail)) if (onPage((await page("GET", token)).html, "action") === action) return { token, mail };
  throw new Error(`no ${action} link in the ${kind} mail to ${to}`);
}

async function preview(id: string, part: "html" | "text", of = "original") {
  const res = await fetch(`${a.url}/api/messages/${id}/preview?part=${part}&of=${of}`, { headers: { authorization: "Bearer test-token-ops-0123456789abcdef" } });
  return { body: await res.text(), digest: res.headers.get("airlock-digest") };
}

async function submit(over: Record<string, unknown> = {}) {
  const subject = `Review ${++seq}`;
  const r = await a.call("author", "POST", "/api/messages", { subject, text: "Town hall on Friday at 10.\n\nBring questions.", html: "<p>Town hall on <b>Friday</b> at 10.</p>", audience: { lists: ["team"] }, ...over });
  expect(r.status).toBe(201);
  return r.body as { id: string; subject: string; digest: string; messageId: string };
}

/** Edits the stored message behind Airlock's back (what a bug or an intruder could do). */
async function tamper(id: string, text: string) {
  const redis = new Redis(a.redis.url);
  try {
    await redis.hset(keys.message(id), "text", text);
  } finally {
    redis.disconnect();
  }
}

describe("every part, exactly as sent", () => {
  it("the approval request and the link page show both parts as built and the digest; approving through the page records it", async () => {
    const m = await submit();
    const text = (await preview(m.id, "text")).body;
    expect(text).toContain("Town hall on Friday at 10.\n\nBring questions.");
    const { token, mail } = await linkFor(USERS.approver1.email, m.subject, "Approval needed", "approve");

    // The mail: the text part verbatim in a monospace block, the built HTML part, the digest.
    const html = mail.mail.html as string;
    const pre = /<pre [^>]*monospace[^>]*>([\s\S]*?)<\/pre>/.exec(html)?.[1];
    expect(pre && unescape(pre)).toBe(text);
    expect(html).toContain("<p>Town hall on <b>Friday</b> at 10.</p>");
    expect(html).toContain(m.digest);
    expect(mail.mail.text).toContain(m.digest);
    expect(mail.mail.text).toContain("> Bring questions.");

    // The page: both parts (the HTML part in a sandboxed frame of the same build), the digest, the sender, by domain.
    const p = await page("GET", token);
    expect(p.status).toBe(200);
    const shownText = /<pre class="text-part"[^>]*>([\s\S]*?)<\/pre>/.exec(p.html)?.[1];
    expect(shownText && unescape(shownText)).toBe(text);
    expect(onPage(p.html, "digest")).toBe(m.digest);
    expect(p.html).toContain(`<code class="digest">${m.digest}</code>`);
    expect(p.html).toContain("Internal Communications &lt;comms@corp.example&gt;");
    expect(p.html).toContain("<li>corp.example: 3</li>");
    expect(p.html).toContain("<li>eu.corp.example: 1</li>");
    const frameSrc = unescape(/<iframe class="preview-frame" src="([^"]+)"/.exec(p.html)![1]!);
    const frame = await fetch(a.url + frameSrc);
    expect(frame.status).toBe(200);
    expect(frame.headers.get("content-security-policy")).toContain("sandbox");
    expect(frame.headers.get("airlock-digest")).toBe(m.digest);
    expect(await frame.text()).toBe((await preview(m.id, "html")).body);
    expect((await fetch(`${a.url}/links/${token}/preview?digest=${"0".repeat(64)}`)).status).toBe(409);

    // Without the page's digest the form is refused; with it, the approval names it.
    expect((await page("POST", token, { action: "approve" })).status).toBe(400);
    const done = await page("POST", token, { action: "approve", digest: m.digest });
    expect(done.status).toBe(200);
    expect((await get(m.id)).approvals).toEqual([expect.objectContaining({ by: USERS.approver1.email, digest: m.digest })]);
  });

  it("refuses an approval when the message was edited between the page and the POST (409), approving nothing", async () => {
    const m = await submit();
    const { token } = await linkFor(USERS.approver2.email, m.subject, "Approval needed", "approve");
    const shown = onPage((await page("GET", token)).html, "digest")!;
    expect((await a.call("author", "PUT", `/api/messages/${m.id}`, { subject: m.subject, text: "Town hall moved to Monday.", audience: { lists: ["team"] } })).status).toBe(200);
    const before = await decisions(m.id);
    const post = await page("POST", token, { action: "approve", digest: shown });
    expect(post.status).toBe(409);
    expect((await get(m.id)).approvals).toEqual([]);
    expect(await decisions(m.id)).toEqual(before);
  });

  it("refuses an approval when the stored text changed under the same revision (409), and the link still shows it as it is now", async () => {
    const m = await submit();
    const { token } = await linkFor(USERS.approver1.email, m.subject, "Approval needed", "approve");
    const shown = onPage((await page("GET", token)).html, "digest")!;
    await tamper(m.id, "Town hall is cancelled. Delete the app.");
    const post = await page("POST", token, { action: "approve", digest: shown });
    expect(post.status).toBe(409);
    expect(post.html).toContain("changed since this page was shown");
    expect((await get(m.id)).approvals).toEqual([]);
    // Not used up: opened again, it shows what would go out now, and says it is not what was submitted.
    const again = await page("GET", token);
    expect(again.status).toBe(200);
    expect(again.html).toContain("Town hall is cancelled. Delete the app.");
    expect(again.html).toContain("What would go out now is not what was submitted");
    const now = onPage(again.html, "digest")!;
    expect(now).not.toBe(m.digest);
    expect((await page("POST", token, { action: "approve", digest: now })).status).toBe(409);
    expect((await get(m.id)).approvals).toEqual([]);
  });

  it("the dashboard message page shows the text part, the digest and recipients by domain", async () => {
    const m = await submit();
    const signin = await fetch(`${a.url}/signin`, {
      method: "POST",
      redirect: "manual",
      headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" },
      body: new URLSearchParams({ token: "test-token-ops-0123456789abcdef" }),
    });
    const cookie = (signin.headers.get("set-cookie") ?? "").split(";")[0]!;
    const html = await (await fetch(`${a.url}/messages/${m.id}`, { headers: { cookie } })).text();
    const shownText = /<pre class="text-part"[^>]*>([\s\S]*?)<\/pre>/.exec(html)?.[1];
    expect(shownText && unescape(shownText)).toBe((await preview(m.id, "text")).body);
    expect(html).toContain(`<code class="digest">${m.digest}</code>`);
    expect(html).toContain(`src="/api/messages/${m.id}/preview"`);
    expect(html).toContain("<li>corp.example: 3</li>");
  });
});

/** A message sent to the team, then recalled by `by` with a custom correction text. */
async function recalledWithText(by: "author" | "approver1", correctionText: string) {
  const m = await submit({ holdMinutes: 0.02 });
  expect((await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest })).status).toBe(200);
  await a.until("sent", async () => (await get(m.id)).state === "sent");
  const r = await a.call(by, "POST", `/api/messages/${m.id}/recall`, { reason: "wrong room", correctionText });
  expect(r.body).toMatchObject({ state: "correcting", correction: { status: "pending" } });
  return { ...m, correctionDigest: r.body.correction.digest as string };
}

describe("correction approval by mail", () => {
  it("asks the approvers but not the recaller; approving through the link sends the correction to each recipient once", async () => {
    const m = await recalledWithText("approver1", "The town hall is in room 4.");
    const { token, mail } = await linkFor(USERS.approver2.email, m.subject, "Correction text to approve", "approveCorrection");
    await a.until("request to both", () => mails(USERS.authorApprover.email, m.subject).find((x) => x.mail.subject!.includes("Correction text to approve")));
    expect(mail.mail.text).toContain("> The town hall is in room 4.");
    expect(mail.mail.text).toContain(m.correctionDigest);
    expect((await preview(m.id, "text", "correction")).digest).toBe(m.correctionDigest);

    const p = await page("GET", token);
    expect(p.status).toBe(200);
    expect(p.html).toContain("The town hall is in room 4.");
    expect(p.html).toContain(`<code class="digest">${m.correctionDigest}</code>`);
    expect(onPage(p.html, "digest")).toBe(m.correctionDigest);
    expect(correctionsOf(m.messageId)).toHaveLength(0); // the GET changed nothing

    // The recaller never gets such a link; one made out to them (forwarded, say) is refused.
    const own = await a.rt.tokens.issue({ user: USERS.approver1.email, message: m.id, revision: 1, action: "approveCorrection", expiresAt: a.clock.now() + 3600_000 });
    const refused = await page("GET", own);
    expect(refused.status).toBe(403);
    expect(refused.html).toContain("someone else decides on it");
    expect((await page("POST", own, { action: "approveCorrection", digest: m.correctionDigest })).status).toBe(403);

    expect((await page("POST", token, { action: "approveCorrection", digest: m.correctionDigest })).status).toBe(200);
    await a.until("corrected", async () => (await get(m.id)).state === "corrected");
    const sent = correctionsOf(m.messageId);
    expect(sent.flatMap((x) => x.to).sort()).toEqual([...team].sort());
    for (const x of sent) expect(x.mail.text).toContain("The town hall is in room 4.");
    expect((await get(m.id)).correction).toMatchObject({ status: "approved", approvals: [expect.objectContaining({ by: USERS.approver2.email, digest: m.correctionDigest })] });
    // By now the recaller was mailed the recall notice, never the request.
    expect(mails(USERS.approver1.email, m.subject).filter((x) => x.mail.subject!.includes("Correction text to approve"))).toEqual([]);
  });

  it("rejecting through the link (with a reason) sends the standard correction", async () => {
    const m = await recalledWithText("author", "Wire the money to account X.");
    const { token } = await linkFor(USERS.approver1.email, m.subject, "Correction text to approve", "rejectCorrection");
    const missing = await page("POST", token, { action: "rejectCorrection", reason: " " });
    expect(missing.status).toBe(400);
    expect(missing.html).toContain("<form");
    expect((await page("POST", token, { action: "rejectCorrection", reason: "not our wording" })).status).toBe(200);
    await a.until("corrected", async () => (await get(m.id)).state === "corrected");
    const sent = correctionsOf(m.messageId);
    expect(sent.flatMap((x) => x.to).sort()).toEqual([...team].sort());
    for (const x of sent) {
      expect(x.mail.text).toContain("sent in error");
      expect(x.mail.text).not.toContain("Wire the money");
    }
    expect((await get(m.id)).correction).toMatchObject({ status: "declined", rejection: { by: USERS.approver1.email, reason: "not our wording" } });
    // Decided: the approve link of the same mail now says so and changes nothing.
    const { mail } = await linkFor(USERS.approver1.email, m.subject, "Correction text to approve", "rejectCorrection").catch(() => ({ mail: null }));
    expect(mail).toBeNull(); // the reject link is used up: no page offers it any more
    const request = mails(USERS.approver1.email, m.subject).find((x) => x.mail.subject!.includes("Correction text to approve"))!;
    const late = tokensIn(request).find((t) => t !== token)!;
    const closed = await page("GET", late);
    expect(closed.status).toBe(409);
    expect(closed.html).toContain("no longer waiting for a decision");
  });
});

describe("halts are told", () => {
  it("a message changed in Redis after approval is halted by Airlock, nothing is sent, and ops get a halted mail", async () => {
    const m = await submit({ holdMinutes: 0.05 });
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest })).status).toBe(200);
    await tamper(m.id, "Town hall is cancelled. Delete the app.");
    const halted = await a.until("halted", async () => {
      const cur = await get(m.id);
      return cur.paused ? cur : false;
    });
    expect(halted.paused.by).toBe("airlock");
    expect(originalsOf(m.messageId)).toHaveLength(0);
    const notice = await a.until("halted mail to ops", () => mails(USERS.ops.email, m.subject).find((x) => x.mail.subject!.startsWith("[Airlock] Halted")));
    expect(notice.mail.text).toContain("Airlock halted the sending");
    expect(notice.mail.text).toContain(m.digest); // what it saw: the digest approved, not what it built
    expect(notice.mail.text).toContain(`/messages/${m.id}`);
    for (const who of [USERS.author.email, USERS.approver1.email]) await a.until(`halted mail to ${who}`, () => mails(who, m.subject).find((x) => x.mail.subject!.startsWith("[Airlock] Halted")));
    expect(originalsOf(m.messageId)).toHaveLength(0);
  });
});
