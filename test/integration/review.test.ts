/**
 * The approver's review page (/messages/:id/review) over HTTP, as a browser speaks it, against the
 * real service, Redis and SMTP sink: the message exactly as it will be sent (the text part verbatim,
 * the digest), what it goes to and what changed; Approve and Reject as forms bound to the revision
 * and digest shown, with the API's rules (never the author: 403; a changed message: 409; a reason
 * required: 400 at the field); a custom correction text reviewed and approved the same way.
 * (In a real browser, from the approval request mail: test/browser/review.browser.test.ts.)
 */
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keys } from "../../src/store/keys.js";
import { startAirlock, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";
import { attr, dashboardClient, type Browser, type Page } from "../support/dashboard-client.js";

let a: TestAirlock;
const team = ["ann@corp.example", "ben@corp.example", "cat@corp.example", "dan@eu.corp.example"];
let seq = 0;

beforeAll(async () => {
  a = await startAirlock({ HOLD_MIN_SECONDS: "1" });
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: team.map((email) => ({ email })) })).status).toBe(201);
});
afterAll(async () => a?.stop());

const { signIn } = dashboardClient(() => a.url);
const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
const unescape = (s: string) => s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&#x3D;/g, "=").replace(/&#x60;/g, "`").replace(/&amp;/g, "&");
/** The value of the page's (first) hidden field of this name. */
const field = (html: string, name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(html)?.[1];
/** The text part as the page shows it in its <pre>. */
const textPart = (html: string) => unescape(/<pre class="text-part" id="review-text"[^>]*>([\s\S]*?)<\/pre>/.exec(html)?.[1] ?? "");
/** The forms a page offers, by where they post to. */
const actions = (html: string) => [...html.matchAll(/<form method="post" action="([^"]+)" class="review-form">/g)].map((m) => m[1]!);

async function preview(id: string, part: "html" | "text", of = "original") {
  const res = await fetch(`${a.url}/api/messages/${id}/preview?part=${part}&of=${of}`, { headers: { authorization: "Bearer test-token-ops-0123456789abcdef" } });
  return { body: await res.text(), digest: res.headers.get("airlock-digest") };
}

async function submit(author: UserKey = "author", over: Record<string, unknown> = {}) {
  const subject = `Review page ${++seq}`;
  const r = await a.call(author, "POST", "/api/messages", {
    subject,
    markdown: "Town hall on **Friday** at 10 & 11.\n\nBring <questions>.",
    audience: { lists: ["team"], addresses: ["eve@partner.corp.example"] },
    ...over,
  });
  expect(r.status).toBe(201);
  return r.body as { id: string; subject: string; digest: string; revision: number; messageId: string };
}

/** The form of a review page as the page filled it, plus what the person typed. */
function formOf(b: Browser, page: Page, typed: Record<string, string> = {}): Record<string, string> {
  return { _csrf: b.csrf, revision: field(page.html, "revision") ?? "", digest: field(page.html, "digest") ?? "", ...typed };
}

describe("the review page", () => {
  it("shows the message exactly as it will be sent, with its digest, recipients by list version and by domain, and the changes", async () => {
    const first = await submit();
    const edited = await a.call("author", "PUT", `/api/messages/${first.id}`, {
      subject: first.subject,
      markdown: "Town hall on **Monday** at 10 & 11.\n\nBring <questions>.",
      audience: { lists: ["team"], addresses: ["eve@partner.corp.example"] },
    });
    expect(edited.status).toBe(200);
    const m = edited.body as { id: string; revision: number; digest: string };
    expect(m.revision).toBe(2);

    const b = await signIn("approver1");
    const page = await b.get(`/messages/${m.id}/review`);
    expect(page.status).toBe(200);
    expect(page.headers.get("content-security-policy")).toContain("frame-src 'self'");
    const text = await preview(m.id, "text");
    expect(text.digest).toBe(m.digest);
    expect(textPart(page.html)).toBe(text.body); // verbatim, "&" and "<questions>" as typed
    expect(text.body).toContain("Bring <questions>.");
    expect(page.html).toContain(`<code class="digest" id="review-digest">${m.digest}</code>`);
    expect(field(page.html, "digest")).toBe(m.digest);
    expect(field(page.html, "revision")).toBe("2");
    expect(attr(page.html)).toContain(`src="/api/messages/${m.id}/preview?part=html"`);
    // Recipients: the list with the version the revision froze, and by domain; the explicit addresses.
    expect(page.html).toMatch(/<th scope="row">team<\/th>\s*<td>version 1<\/td>\s*<td>4<\/td>/);
    expect(page.html).toContain("<li>corp.example: 3</li>");
    expect(page.html).toContain("<li>eu.corp.example: 1</li>");
    expect(page.html).toContain("Explicit addresses: 1");
    expect(page.html).toContain("<li>partner.corp.example: 1</li>");
    // The changes since revision 1: the Markdown source, line by line.
    expect(page.html).toContain("Changes since revision 1");
    expect(page.html).toContain('<span class="diff-del">- Town hall on **Friday** at 10 &amp; 11.</span>');
    expect(page.html).toContain('<span class="diff-add">+ Town hall on **Monday** at 10 &amp; 11.</span>');
    expect(page.html).toContain("None yet (1 required).");
    expect(actions(page.html)).toEqual([`/messages/${m.id}/review/approve`, `/messages/${m.id}/review/reject`]);

    // The author reads the same page without buttons, and is told why.
    const author = await (await signIn("author")).get(`/messages/${m.id}/review`);
    expect(author.status).toBe(200);
    expect(actions(author.html)).toEqual([]);
    expect(author.html).toContain("You wrote this message, so there are no buttons here");
    expect(textPart(author.html)).toBe(text.body);
  });

  it("is linked from the approval request mail, the message page and the pending card of those asked", async () => {
    const m = await submit();
    const mail = await a.until("approval request", () => a.sink.received.find((r) => r.to.includes(USERS.approver2.email) && r.mail.subject?.includes(m.subject)));
    expect(mail.mail.text).toMatch(new RegExp(`^https?://[^/]+/messages/${m.id}/review$`, "m"));
    expect(String(mail.mail.html)).toMatch(new RegExp(`<a href="https?://[^/"]+/messages/${m.id}/review"[^>]*>Review in Airlock</a>`));
    const b = await signIn("approver2");
    expect((await b.get(`/messages/${m.id}`)).html).toContain(`href="/messages/${m.id}/review">Review and approve…</a>`);
    expect((await b.get("/")).html).toContain(`href="/messages/${m.id}/review" data-field="review"`);
    // Not for the author, nor for a role that does not approve.
    for (const who of ["author", "ops"] as const) expect((await (await signIn(who)).get(`/messages/${m.id}`)).html).not.toContain("/review");
  });
});

describe("deciding on the review page", () => {
  it("approves through the form: the approval names the digest shown; the answer is the message page with a notice", async () => {
    const m = await submit();
    const b = await signIn("approver1");
    const page = await b.get(`/messages/${m.id}/review`);
    // Without the CSRF token nothing happens.
    expect((await b.post(`/messages/${m.id}/review/approve`, { ...formOf(b, page), _csrf: "" })).status).toBe(403);
    const done = await b.post(`/messages/${m.id}/review/approve`, formOf(b, page, { comment: "  Looks right  " }));
    expect(done.status).toBe(303);
    expect(done.location).toBe(`/messages/${m.id}?done=approved`);
    const after = await get(m.id);
    expect(after.state).toBe("scheduled");
    expect(after.approvals).toEqual([expect.objectContaining({ by: USERS.approver1.email, digest: m.digest, comment: "Looks right" })]);
    const messagePage = await b.get(done.location!);
    expect(messagePage.html).toMatch(/<p class="notice info" id="decision-notice" role="status">Approved\. It is scheduled: it goes out at [^<]+ to 5 recipients/);
    // Once approved, the page has nothing left to decide.
    const again = await b.get(`/messages/${m.id}/review`);
    expect(actions(again.html)).toEqual([]);
    expect(again.html).toContain("there is nothing left to approve or reject");
    expect((await b.post(`/messages/${m.id}/review/approve`, formOf(b, page))).status).toBe(409);
  });

  it("refuses the author's POST with a 403 page and records nothing", async () => {
    const m = await submit("authorApprover");
    const approver = await signIn("approver1");
    const page = await approver.get(`/messages/${m.id}/review`);
    const own = await signIn("authorApprover"); // an approver too, but the author
    const ownPage = await own.get(`/messages/${m.id}/review`);
    expect(actions(ownPage.html)).toEqual([]);
    expect(ownPage.html).toContain("nobody approves or rejects their own message");
    for (const decision of ["approve", "reject"]) {
      const r = await own.post(`/messages/${m.id}/review/${decision}`, { ...formOf(own, page), reason: "mine" });
      expect(r.status, decision).toBe(403);
      expect(r.html).toContain("Nothing was recorded.");
    }
    // A plain author is no approver at all.
    const author = await signIn("author");
    expect((await author.post(`/messages/${m.id}/review/approve`, formOf(author, page))).status).toBe(403);
    expect(await get(m.id)).toMatchObject({ state: "pending_approval", approvals: [] });
  });

  it("refuses a form from before an edit (409, saying it changed and linking to the fresh review) and approves nothing", async () => {
    const m = await submit();
    const b = await signIn("approver1");
    const before = await b.get(`/messages/${m.id}/review`);
    expect(field(before.html, "revision")).toBe("1");
    const edited = await a.call("author", "PUT", `/api/messages/${m.id}`, { subject: m.subject, markdown: "Town hall moved to **Monday**.", audience: { lists: ["team"] } });
    expect(edited.status).toBe(200);

    for (const decision of ["approve", "reject"]) {
      const r = await b.post(`/messages/${m.id}/review/${decision}`, formOf(b, before, { reason: "too late" }));
      expect(r.status, decision).toBe(409);
      expect(r.html).toContain("the message changed since you opened this page");
      expect(r.html).toContain(`revision 2, digest ${edited.body.digest}`);
      expect(r.html).toContain(`href="/messages/${m.id}/review">Review it as it is now</a>`);
    }
    // The current revision with a digest that is not what would go out: 409 as well.
    const fresh = await b.get(`/messages/${m.id}/review`);
    expect((await b.post(`/messages/${m.id}/review/approve`, { ...formOf(b, fresh), digest: "0".repeat(64) })).status).toBe(409);
    // What is stored changed behind Airlock's back: what the page showed is not what would go out now.
    const redis = new Redis(a.redis.url);
    try {
      await redis.hset(keys.message(m.id), "markdown", "Something else entirely.");
    } finally {
      redis.disconnect();
    }
    expect((await b.post(`/messages/${m.id}/review/approve`, formOf(b, fresh))).status).toBe(409);
    expect(await get(m.id)).toMatchObject({ state: "pending_approval", revision: 2, approvals: [] });
    // The page now says it cannot be approved as it is, and offers only the rejection.
    const changed = await b.get(`/messages/${m.id}/review`);
    expect(changed.html).toContain("it cannot be approved as it is");
    expect(actions(changed.html)).toEqual([`/messages/${m.id}/review/reject`]);
  });

  it("needs a reason to reject: a 400 page with the error at the field, what was typed kept, nothing changed", async () => {
    const m = await submit();
    const b = await signIn("approver2");
    const page = await b.get(`/messages/${m.id}/review`);
    const refused = await b.post(`/messages/${m.id}/review/reject`, formOf(b, page, { reason: "   \n " }));
    expect(refused.status).toBe(400);
    expect(refused.html).toContain('<p class="field-error" id="reject-reason-error" role="alert">Say why you reject it');
    expect(refused.html).toMatch(/<textarea id="reject-reason" name="reason"[^>]*aria-describedby="reject-reason-hint reject-reason-error" aria-invalid="true">/);
    expect(textPart(refused.html)).toBe((await preview(m.id, "text")).body); // the page again, whole
    const tooLong = await b.post(`/messages/${m.id}/review/approve`, formOf(b, page, { comment: "x".repeat(2001) }));
    expect(tooLong.status).toBe(400);
    expect(tooLong.html).toContain('id="approve-comment-error" role="alert">The comment may have at most 2,000 characters.');
    expect(tooLong.html).toContain("x".repeat(2001)); // kept as typed
    expect(await get(m.id)).toMatchObject({ state: "pending_approval", approvals: [], rejection: null });

    const done = await b.post(`/messages/${m.id}/review/reject`, formOf(b, page, { reason: "Wrong date: the town hall is on Monday." }));
    expect(done.status).toBe(303);
    expect(done.location).toBe(`/messages/${m.id}?done=rejected`);
    expect(await get(m.id)).toMatchObject({ state: "rejected", rejection: { by: USERS.approver2.email, reason: "Wrong date: the town hall is on Monday." } });
    expect((await b.get(done.location!)).html).toContain("Rejected. Nothing will be sent");
  });
});

describe("a custom correction text on the review page", () => {
  it("shows the correction as it would go out; the recaller gets no buttons and a 403; an approval sends it", async () => {
    const m = await submit("author", { holdMinutes: 0.02 });
    expect((await a.call("approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest })).status).toBe(200);
    await a.until("sent", async () => (await get(m.id)).state === "sent");
    const recalled = await a.call("approver1", "POST", `/api/messages/${m.id}/recall`, { reason: "wrong room", correctionText: "The town hall is in room 4 & 5." });
    expect(recalled.body).toMatchObject({ state: "correcting", correction: { status: "pending" } });
    const correctionDigest = recalled.body.correction.digest as string;
    const mail = await a.until("correction request", () => a.sink.received.find((r) => r.to.includes(USERS.approver2.email) && r.mail.subject?.includes("Correction text to approve") && r.mail.subject.includes(m.subject)));
    expect(mail.mail.text).toMatch(new RegExp(`/messages/${m.id}/review\\?of=correction$`, "m"));

    // The recaller reads it, without buttons; their POST is refused.
    const recaller = await signIn("approver1");
    const own = await recaller.get(`/messages/${m.id}/review`);
    expect(own.status).toBe(200);
    expect(actions(own.html)).toEqual([]);
    expect(own.html).toContain("You recalled this message and wrote its correction text");
    expect((await recaller.post(`/messages/${m.id}/review/correction/approve`, formOf(recaller, own, { digest: correctionDigest }))).status).toBe(403);

    // Another approver: the correction as it would go out (the default while it waits), its digest, the forms.
    const b = await signIn("approver2");
    expect((await b.get(`/messages/${m.id}`)).html).toContain(`href="/messages/${m.id}/review?of&#x3D;correction">Review the correction text…</a>`);
    const page = await b.get(`/messages/${m.id}/review?of=correction`);
    expect(page.status).toBe(200);
    const text = await preview(m.id, "text", "correction");
    expect(text.digest).toBe(correctionDigest);
    expect(textPart(page.html)).toBe(text.body);
    expect(text.body).toContain("The town hall is in room 4 & 5.");
    expect(field(page.html, "digest")).toBe(correctionDigest);
    expect(field(page.html, "revision")).toBeUndefined();
    expect(attr(page.html)).toContain(`src="/api/messages/${m.id}/preview?part=html&of=correction"`);
    expect(actions(page.html)).toEqual([`/messages/${m.id}/review/correction/approve`, `/messages/${m.id}/review/correction/reject`]);
    expect(a.sink.received.filter((r) => r.mail.inReplyTo === m.messageId)).toHaveLength(0);

    const done = await b.post(`/messages/${m.id}/review/correction/approve`, formOf(b, page, { comment: "Checked the room" }));
    expect(done.status).toBe(303);
    expect(done.location).toBe(`/messages/${m.id}?done=correction-approved`);
    await a.until("corrected", async () => (await get(m.id)).state === "corrected");
    const corrections = a.sink.received.filter((r) => r.mail.inReplyTo === m.messageId);
    expect(corrections.flatMap((r) => r.to).sort()).toEqual([...team, "eve@partner.corp.example"].sort());
    for (const r of corrections) expect((r.mail.text ?? "").replace(/\r\n/g, "\n")).toBe(text.body);
    expect((await get(m.id)).correction).toMatchObject({ status: "approved", approvals: [expect.objectContaining({ by: USERS.approver2.email, digest: correctionDigest, comment: "Checked the room" })] });
    expect((await b.get(done.location!)).html).toContain("Correction text approved");
  });
});
