/**
 * The compose page without JavaScript: plain forms posted with the session cookie and the CSRF
 * token, as a browser without scripts posts them. A draft is saved, refused input is answered with
 * the form as typed and nothing changed, a stale revision is named, the draft is submitted; My
 * messages lists it; a plain author cannot reach someone else's draft; a draft is discarded after
 * a confirmation page. (The whole journey in Chromium: test/browser/compose.browser.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAirlock, USERS, type TestAirlock } from "../support/airlock.js";
import { attr, dashboardClient, type Browser } from "../support/dashboard-client.js";

let a: TestAirlock;
let author: Browser;

beforeAll(async () => {
  a = await startAirlock({ HOLD_MIN_SECONDS: "600" });
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: [{ email: "ann@corp.example" }, { email: "ben@corp.example" }, { email: "cy@other.example" }] })).status).toBe(201);
  expect((await a.call("author2", "POST", "/api/audiences", { name: "crew", recipients: [{ email: "ann@corp.example" }, { email: "dee@corp.example" }] })).status).toBe(201);
  author = await dashboardClient(() => a.url).signIn("author");
});
afterAll(async () => {
  await a?.stop();
});

/** The form's fields as the page sends them: every field, as typed. */
function fields(over: Record<string, string> = {}): Record<string, string> {
  return { _csrf: author.csrf, subject: "Canteen closed on Friday", from: "comms@corp.example", addresses: "", markdown: "The canteen is **closed** on Friday.\r\n\r\n- bring lunch", template: "", holdMinutes: "", sendAt: "", ...over };
}

/** URL-encoded with repeated `lists`, as a form with several boxes ticked. */
async function post(b: Browser, path: string, form: Record<string, string>, lists: string[] = []) {
  const body = new URLSearchParams(form);
  for (const l of lists) body.append("lists", l);
  const res = await fetch(a.url + path, { method: "POST", redirect: "manual", headers: { cookie: b.cookie, "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" }, body });
  return { status: res.status, html: await res.text(), location: res.headers.get("location") };
}

const message = async (id: string) => (await a.call("author", "GET", `/api/messages/${id}`)).body;

describe("compose without JavaScript", () => {
  let id: string;

  it("offers the author's senders, the lists with size and owner, and says what the choice means", async () => {
    const page = await author.get("/compose");
    expect(page.status).toBe(200);
    const html = attr(page.html);
    expect(html).toContain('<a href="/compose" aria-current="page">Compose</a>');
    expect(html).toContain('<a href="/mine">My messages</a>');
    expect(html).toContain('<option value="comms@corp.example" selected>Internal Communications &lt;comms@corp.example&gt;</option>');
    expect(html).toMatch(/<span class="list-name">team<\/span> <span class="meta">3 recipients · owner author@corp.example<\/span>/);
    expect(html).toMatch(/<span class="list-name">crew<\/span> <span class="meta">2 recipients · owner author2@corp.example<\/span>/);
    expect(html).toContain('min="10"'); // HOLD_MIN_SECONDS 600, in minutes
    expect(html).toContain("No recipients yet");
    // An approver has no compose page, and no link to it.
    const approver = await dashboardClient(() => a.url).signIn("approver1");
    expect((await approver.get("/compose")).status).toBe(403);
    expect((await approver.get("/")).html).not.toContain('href="/compose"');
  });

  it("saves a draft and shows it again with a notice, its counts and its preview", async () => {
    const saved = await post(author, "/compose", { ...fields({ addresses: "Zed@Corp.example\r\n" }), action: "save" }, ["team", "crew"]);
    expect(saved.status).toBe(303);
    expect(saved.location).toMatch(/^\/messages\/\d+\/edit\?done=saved$/);
    id = /\/messages\/(\d+)\//.exec(saved.location!)![1]!;
    const m = await message(id);
    expect(m).toMatchObject({ state: "draft", revision: 1, subject: "Canteen closed on Friday", markdown: "The canteen is **closed** on Friday.\n\n- bring lunch", audience: { lists: ["team", "crew"], addresses: ["zed@corp.example"] } });
    const page = await author.get(saved.location!);
    const html = attr(page.html);
    expect(html).toContain("Draft saved as revision 1.");
    expect(html).toContain('value="Canteen closed on Friday"');
    expect(html).toMatch(/<input type="checkbox" id="list-team" name="lists" value="team" checked>/);
    expect(html).toContain("zed@corp.example</textarea>");
    // 3 + 2 + 1, possibly overlapping; by domain, at most.
    expect(html).toContain('<strong data-field="recipients">Up to 6 recipients</strong>');
    expect(html).toContain('<strong data-field="approvals">1 approval</strong>');
    expect(html).toContain("<li>corp.example: 5</li>");
    expect(html).toContain("<li>other.example: 1</li>");
    // The preview: the saved revision as built for sending, the HTML part in the frame.
    expect(html).toContain(`src="/api/messages/${id}/preview?part=html"`);
    const text = await author.get(`/api/messages/${id}/preview?part=text`);
    expect(text.status).toBe(200);
    const shown = /<pre class="text-part" id="preview-text"[^>]*>([\s\S]*?)<\/pre>/.exec(page.html)![1]!;
    expect(attr(shown).replace(/&lt;/g, "<").replace(/&gt;/g, ">")).toBe(text.html);
    expect(html).toContain(`<code class="digest" data-field="digest">${text.headers.get("airlock-digest")}</code>`);
  });

  it("answers refused input with the form as typed, each error at its field, and changes nothing", async () => {
    const typed = fields({ subject: "Changed but refused", addresses: "ok@corp.example\r\nnot an address", holdMinutes: "3", markdown: "Kept **as typed**" });
    const res = await post(author, `/messages/${id}/edit`, { ...typed, revision: "1", action: "save" }, ["team"]);
    expect(res.status).toBe(400);
    const html = attr(res.html);
    expect(html).toContain('value="Changed but refused"');
    expect(html).toContain("Kept **as typed**</textarea>");
    expect(html).toContain("ok@corp.example\nnot an address</textarea>");
    expect(html).toMatch(/aria-invalid="true" aria-describedby="addresses-error">/);
    expect(html).toMatch(/<p class="field-error" id="addresses-error" role="alert">“not” [^<]+<\/p>/);
    expect(html).toContain('<p class="field-error" id="holdMinutes-error" role="alert">The hold is at least 10 minutes.</p>');
    expect(html).toContain("Nothing was saved");
    expect(await message(id)).toMatchObject({ revision: 1, subject: "Canteen closed on Friday" });
    // Submitting an incomplete form saves nothing either.
    const blank = await post(author, `/messages/${id}/edit`, { ...fields({ subject: " ", markdown: "" }), revision: "1", action: "submit" });
    expect(blank.status).toBe(400);
    expect(blank.html).toContain('<p class="field-error" id="subject-error" role="alert">Give the message a subject.</p>');
    expect(blank.html).toContain('<p class="field-error" id="markdown-error" role="alert">Write the message.</p>');
    expect(blank.html).toContain('<p class="field-error" id="audience-error" role="alert">Choose at least one audience list, or type an address.</p>');
    expect((await message(id)).revision).toBe(1);
  });

  it("refuses a save over a revision saved meanwhile, naming it and keeping what was typed", async () => {
    expect((await a.call("author", "PUT", `/api/messages/${id}`, { subject: "Saved from another tab", markdown: "Other tab", audience: { lists: ["team"] } })).status).toBe(200);
    const res = await post(author, `/messages/${id}/edit`, { ...fields({ subject: "My version" }), revision: "1", action: "submit" }, ["team"]);
    expect(res.status).toBe(409);
    const html = attr(res.html);
    expect(html).toContain("saved revision 2");
    expect(html).toContain('value="My version"');
    expect(html).toContain('name="revision" value="2"'); // saving again replaces it, knowingly
    expect(await message(id)).toMatchObject({ state: "draft", revision: 2, subject: "Saved from another tab" });
  });

  it("submits the draft for approval: the approvers are asked", async () => {
    const res = await post(author, `/messages/${id}/edit`, { ...fields(), revision: "2", action: "submit" }, ["team"]);
    expect(res.status).toBe(303);
    expect(res.location).toBe(`/messages/${id}/edit?done=submitted`);
    const m = await message(id);
    expect(m).toMatchObject({ state: "pending_approval", revision: 3, subject: "Canteen closed on Friday", recipientCount: 3 });
    const page = await author.get(res.location!);
    expect(page.html).toContain("Submitted for approval as revision 3: it needs 1 approval, and the approvers have been asked.");
    expect(page.html).toContain("Submit as revision 4");
    expect(page.html).not.toContain(">Save draft<");
    // The form as it is, previewed unsaved, is exactly the submitted revision: same digest.
    const preview = await post(author, `/compose/preview?id=${id}`, fields(), ["team"]);
    expect(preview.status).toBe(200);
    expect(preview.html).toContain(`<code class="digest" data-field="digest">${m.digest}</code>`);
    const html = await post(author, `/compose/preview?id=${id}&part=html`, fields(), ["team"]);
    expect(html.html).toContain("<strong>closed</strong>");
    await a.until("the approval request", () => a.sink.received.some((r) => r.to.includes(USERS.approver1.email) && r.mail.subject?.includes("Canteen closed")));
  });

  it("sends a test of the revision as saved to its author alone, and says when the form holds more", async () => {
    const tested = await post(author, `/messages/${id}/edit`, { ...fields(), revision: "3", action: "test" }, ["team"]);
    expect(tested.status).toBe(303);
    expect(tested.location).toBe(`/messages/${id}/edit?done=tested`);
    const mail = await a.until("the test", () => a.sink.received.find((r) => r.mail.subject === "[TEST] Canteen closed on Friday"));
    expect(mail.to).toEqual([USERS.author.email]);
    // Changes in the form of a pending message are not saved by a test (saving submits anew).
    const changed = await post(author, `/messages/${id}/edit`, { ...fields({ subject: "Not saved by a test" }), revision: "3", action: "test" }, ["team"]);
    expect(changed.status).toBe(200);
    expect(changed.html).toContain("The changes in the form are not in it and not saved");
    expect(attr(changed.html)).toContain('value="Not saved by a test"');
    expect(await message(id)).toMatchObject({ state: "pending_approval", revision: 3, subject: "Canteen closed on Friday" });
  });

  it("lists the author's messages on My messages, and keeps other authors' drafts out of reach", async () => {
    const other = (await a.call("author2", "POST", "/api/messages", { draft: true, subject: "Author two's secret draft" })).body.id as string;
    const mine = await author.get("/mine");
    expect(mine.status).toBe(200);
    expect(mine.html).toContain('<a href="/mine" aria-current="page">My messages</a>');
    expect(mine.html).toMatch(new RegExp(`Waiting for approval[\\s\\S]*<a href="/messages/${id}">Canteen closed on Friday</a>`));
    expect(mine.html).toContain(`<a href="/messages/${id}/edit">Edit`);
    expect(mine.html).not.toContain("Author two's secret draft");
    for (const path of [`/messages/${other}/edit`, `/messages/${other}/discard`]) expect((await author.get(path)).status, path).toBe(404);
    expect((await post(author, `/messages/${other}/edit`, { ...fields(), revision: "1", action: "save" })).status).toBe(404);
    expect((await a.call("author2", "GET", `/api/messages/${other}`)).body).toMatchObject({ revision: 1, subject: "Author two's secret draft" });
  });

  it("discards a draft after a confirmation page, and needs the CSRF token to do it", async () => {
    const saved = await post(author, "/compose", { ...fields({ subject: "Throw away" }), action: "save" });
    const draft = /\/messages\/(\d+)\//.exec(saved.location!)![1]!;
    const confirm = await author.get(`/messages/${draft}/discard`);
    expect(confirm.status).toBe(200);
    expect(confirm.html).toContain("Discard the draft “Throw away”?");
    expect((await post(author, `/messages/${draft}/discard`, {})).status).toBe(403);
    expect((await post(author, `/messages/${draft}/edit`, { ...fields({ _csrf: "" }), revision: "1", action: "save" })).status).toBe(403);
    const gone = await post(author, `/messages/${draft}/discard`, { _csrf: author.csrf });
    expect(gone.status).toBe(303);
    expect(gone.location).toBe("/mine?done=discarded");
    expect((await a.call("author", "GET", `/api/messages/${draft}`)).status).toBe(404);
    expect((await author.get(gone.location!)).html).toContain("Draft discarded.");
  });
});
