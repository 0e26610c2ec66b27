/**
 * The dashboard over HTTP, as a browser would speak it: sign-in for a cookie, pages, CSRF on every
 * form, role rules on recall, history search, the queue board's guard, cookie-authenticated /api.
 * (The live behaviour in a real browser is in test/browser/dashboard.browser.test.ts.)
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAirlock, tokenOf, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";
import { attr, dashboardClient, sameOrigin } from "../support/dashboard-client.js";

let a: TestAirlock;

beforeAll(async () => {
  a = await startAirlock({ HOLD_MIN_SECONDS: "600" });
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: [{ email: "ann@corp.example" }, { email: "ben@corp.example" }, { email: "cy@corp.example" }] })).status).toBe(201);
});
afterAll(async () => {
  await a?.stop();
});

const { raw, signIn } = dashboardClient(() => a.url);

async function scheduled(subject: string, author: UserKey = "author") {
  const m = (await a.call(author, "POST", "/api/messages", { subject, text: "Hello team.", audience: { lists: ["team"] } })).body;
  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  return m as { id: string };
}

describe("sign-in", () => {
  it("sends a visitor without a session to the sign-in page, and back after signing in", async () => {
    const res = await raw("/history?q=x");
    expect(res.status).toBe(303);
    expect(res.location).toBe("/signin?next=%2Fhistory%3Fq%3Dx");
    const page = await raw(res.location!);
    expect(page.status).toBe(200);
    expect(attr(page.html)).toContain('name="next" value="/history?q=x"');
    expect(page.headers.get("content-security-policy")).toContain("script-src 'self'");
    expect(page.headers.get("content-security-policy")).not.toContain("unsafe-inline");
  });

  it("refuses a wrong token with the form again, and a sign-in started by another site", async () => {
    const wrong = await raw("/signin", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", ...sameOrigin }, body: "token=nope&next=%2F" });
    expect(wrong.status).toBe(401);
    expect(wrong.html).toContain("That token is not valid");
    expect(wrong.headers.get("set-cookie")).toBeNull();
    const cross = await raw("/signin", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "cross-site" }, body: new URLSearchParams({ token: tokenOf("ops") }) });
    expect(cross.status).toBe(403);
    expect(cross.headers.get("set-cookie")).toBeNull();
    const noOrigin = await raw("/signin", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ token: tokenOf("ops") }) });
    expect(noOrigin.status).toBe(403);
    const foreignOrigin = await raw("/signin", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", origin: "https://evil.example" }, body: new URLSearchParams({ token: tokenOf("ops") }) });
    expect(foreignOrigin.status).toBe(403);
    const ownOrigin = await raw("/signin", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", origin: new URL(a.url).origin }, body: new URLSearchParams({ token: tokenOf("ops") }) });
    expect(ownOrigin.status).toBe(303);
  });

  it("never redirects off-site after signing in", async () => {
    for (const next of ["//evil.example/x", "https://evil.example", "/\\evil.example", "javascript:alert(1)"]) {
      const res = await raw("/signin", { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded", ...sameOrigin }, body: new URLSearchParams({ token: tokenOf("ops"), next }) });
      expect(res.status, next).toBe(303);
      expect(res.location, next).toBe("/");
    }
  });

  it("signs out only with the CSRF token, and the cookie stops working", async () => {
    const b = await signIn("ops");
    expect((await b.post("/signout", {})).status).toBe(403);
    expect((await b.get("/")).status).toBe(200);
    const out = await b.post("/signout", { _csrf: b.csrf });
    expect(out.status).toBe(303);
    expect((await b.get("/")).status).toBe(303);
    expect((await raw("/api/messages", { headers: { cookie: b.cookie } })).status).toBe(401);
  });
});

describe("pages", () => {
  it("shows pending sends most urgent first, with audience, counts, approvals and a countdown", async () => {
    const waiting = (await a.call("author", "POST", "/api/messages", { subject: "Needs approval", text: "x", audience: { lists: ["team"] } })).body;
    const soon = await scheduled("Going soon");
    const b = await signIn("ops");
    const page = await b.get("/");
    expect(page.status).toBe(200);
    const at = (s: string) => page.html.indexOf(s);
    expect(at("Going soon")).toBeGreaterThan(-1);
    expect(at("Needs approval")).toBeGreaterThan(at("Going soon")); // scheduled before waiting
    expect(page.html).toMatch(/Going out <span data-countdown="[^"]+">in (9|10) minutes?[^<]*<\/span> to 3 people/);
    expect(page.html).toContain("Waiting for 1 more approval · would go to 3 people");
    expect(page.html).toMatch(new RegExp(`data-message="${soon.id}"[\\s\\S]*?Approvals</dt><dd data-field="approvals">1 of 1 \\(${USERS.approver1.email}\\)`));
    expect(page.html).toContain(`href="/messages/${waiting.id}"`);
    expect(page.html).toMatch(/<th scope="row">fanout<\/th>/);
    expect(page.html).toContain('href="/ops/queues/"');
  });

  it("renders a message page with preview, approvals, revisions, recipients (paged, filtered) and the audit trail", async () => {
    const m = (await a.call("author", "POST", "/api/messages", { subject: "First words", text: "x", audience: { lists: ["team"] } })).body;
    expect((await a.call("author", "PUT", `/api/messages/${m.id}`, { subject: "Second words", text: "y", audience: { lists: ["team"] } })).status).toBe(200);
    const b = await signIn("author");
    const page = await b.get(`/messages/${m.id}`);
    expect(page.status).toBe(200);
    expect(page.html).toContain(`src="/api/messages/${m.id}/preview"`);
    expect(page.html).toContain("Revision 2: Second words");
    expect(page.html).toMatch(/<span class="diff-del">- First words<\/span>/);
    expect(page.html).toMatch(/<span class="diff-add">\+ Second words<\/span>/);
    for (const who of ["ann@corp.example", "ben@corp.example", "cy@corp.example"]) expect(page.html).toContain(`<td>${who}</td>`);
    expect(page.html).toContain("<strong>submit</strong> by author@corp.example");
    expect(page.html).toContain("<strong>edit</strong>");
    const sentOnly = await b.get(`/messages/${m.id}?status=sent`);
    expect(sentOnly.html).toContain("No recipient in this state on this page.");
    const paged = await b.get(`/messages/${m.id}?cursor=2`);
    expect(paged.html).toContain("<td>cy@corp.example</td>");
    expect(paged.html).not.toContain("<td>ann@corp.example</td>");
    // The preview is reachable with the cookie, as the page's frame asks for it.
    const preview = await b.get(`/api/messages/${m.id}/preview`);
    expect(preview.status).toBe(200);
    expect(preview.html).toContain("Second words"); // the current revision, rendered
  });

  it("answers unknown pages and malformed messages with a 404 page, not JSON", async () => {
    const b = await signIn("ops");
    for (const path of ["/messages/999999", "/messages/abc", "/messages/999999/recall", "/fragments/card/0", "/messages/1/nope", "/messages/", "/no-such-page"]) {
      const res = await b.get(path);
      expect(res.status, path).toBe(404);
      expect(res.html, path).toContain("<h1>Not found</h1>");
    }
  });

  it("finds finished messages by subject and author, paged", async () => {
    const ids: string[] = [];
    for (let i = 0; i < 27; i++) {
      const m = (await a.call(i % 2 ? "author2" : "author", "POST", "/api/messages", { subject: `Archive ${i} lunch`, text: "x", audience: { lists: ["team"] } })).body;
      expect((await a.call(i % 2 ? "author2" : "author", "POST", `/api/messages/${m.id}/withdraw`)).status).toBe(200);
      ids.push(m.id);
    }
    const b = await signIn("ops");
    const first = await b.get("/history?q=LUNCH");
    expect(first.html.match(/Archive \d+ lunch/g)).toHaveLength(25);
    expect(first.html).toContain("Archive 26 lunch"); // newest first
    const next = /href="(\/history\?[^"]+)" rel="next"/.exec(attr(first.html))?.[1];
    expect(next).toBeDefined();
    const second = await b.get(next!);
    expect(second.html.match(/Archive \d+ lunch/g)).toEqual(["Archive 1 lunch", "Archive 0 lunch"]);
    const byAuthor = await b.get("/history?q=lunch&author=author2");
    expect(byAuthor.html.match(/Archive (\d+) lunch/g)!.every((s) => Number(/\d+/.exec(s)![0]) % 2 === 1)).toBe(true);
    expect((await b.get("/history?q=no-such-subject")).html).toContain("No finished message matches");
    const tooLong = await b.get(`/history?q=${"x".repeat(201)}`);
    expect(tooLong.status).toBe(400);
    expect(tooLong.html).toContain("at most 200 characters");
  });
});

describe("recall from the dashboard", () => {
  it("asks for a reason, says who would get a correction, then recalls and shows the result", async () => {
    const m = await scheduled("Recall me");
    const b = await signIn("ops");
    const confirm = await b.get(`/messages/${m.id}/recall`);
    expect(confirm.status).toBe(200);
    expect(confirm.html).toContain("Nobody has received it yet");
    expect(confirm.html).toContain(`action="/messages/${m.id}/recall"`);
    const noReason = await b.post(`/messages/${m.id}/recall`, { _csrf: b.csrf, reason: "  " });
    expect(noReason.status).toBe(400);
    expect(noReason.html).toContain("Say why you are recalling it");
    expect((await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state).toBe("scheduled");
    const done = await b.post(`/messages/${m.id}/recall`, { _csrf: b.csrf, reason: "Wrong audience" });
    expect(done.status).toBe(303);
    expect(done.location).toBe(`/messages/${m.id}#recall-title`);
    expect((await a.call("ops", "GET", `/api/messages/${m.id}`)).body).toMatchObject({ state: "recalled", recall: { by: USERS.ops.email, reason: "Wrong audience" } });
    const shown = await b.get(`/messages/${m.id}`);
    expect(shown.html).toContain(`Recalled by ${USERS.ops.email}`);
    expect(shown.html).toContain("Nobody had received it.");
  });

  it("refuses a recall without the CSRF token, with a wrong one, or from another site, and changes nothing", async () => {
    const m = await scheduled("CSRF target");
    const b = await signIn("ops");
    const attempts = [
      await b.post(`/messages/${m.id}/recall`, { reason: "forged" }),
      await b.post(`/messages/${m.id}/recall`, { reason: "forged", _csrf: "x".repeat(43) }),
      await b.post(`/messages/${m.id}/recall`, { reason: "forged", _csrf: b.csrf }, { "sec-fetch-site": "cross-site" }),
      await b.post(`/messages/${m.id}/recall`, { reason: "forged", _csrf: b.csrf }, { origin: "https://evil.example" }),
      await b.post(`/messages/${m.id}/recall`, { reason: "forged", _csrf: b.csrf }, {}),
    ];
    expect(attempts.map((r) => r.status)).toEqual([403, 403, 403, 403, 403]);
    expect(attempts[0]!.html).toContain("did not come from this Airlock page");
    // The API with the cookie alone needs the token in a header, from our origin.
    const api = (headers: Record<string, string>) => raw(`/api/messages/${m.id}/recall`, { method: "POST", headers: { cookie: b.cookie, "content-type": "application/json", ...headers }, body: JSON.stringify({ reason: "forged" }) });
    expect((await api(sameOrigin)).status).toBe(403);
    expect((await api({ "sec-fetch-site": "cross-site", "x-csrf-token": b.csrf })).status).toBe(403);
    const state = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
    expect(state).toMatchObject({ state: "scheduled", recall: null });
    expect((await api({ ...sameOrigin, "x-csrf-token": b.csrf })).status).toBe(200);
  });

  it("lets an author recall only their own message; approvers and ops recall any", async () => {
    const other = await scheduled("Someone else's", "author2");
    const own = await scheduled("Mine");
    const author = await signIn("author");
    const page = await author.get(`/messages/${other.id}`);
    expect(page.html).not.toContain(`href="/messages/${other.id}/recall"`);
    expect((await author.get(`/messages/${other.id}/recall`)).html).toContain("Authors may recall only their own messages");
    const refused = await author.post(`/messages/${other.id}/recall`, { _csrf: author.csrf, reason: "not mine" });
    expect(refused.status).toBe(403);
    expect((await a.call("ops", "GET", `/api/messages/${other.id}`)).body.state).toBe("scheduled");
    expect((await author.get(`/messages/${own.id}`)).html).toContain(`href="/messages/${own.id}/recall"`);
    expect((await author.post(`/messages/${own.id}/recall`, { _csrf: author.csrf, reason: "mine" })).status).toBe(303);
    const approver = await signIn("approver2");
    expect((await approver.post(`/messages/${other.id}/recall`, { _csrf: approver.csrf, reason: "approver may" })).status).toBe(303);
    expect((await a.call("ops", "GET", `/api/messages/${other.id}`)).body.state).toBe("recalled");
  });
});

describe("queue board and stream", () => {
  it("opens the queue board to ops and admin only", async () => {
    expect((await raw("/ops/queues/")).status).toBe(303);
    const author = await signIn("author");
    expect((await author.get("/ops/queues/")).status).toBe(403);
    for (const user of ["ops", "admin"] as const) {
      const b = await signIn(user);
      const board = await b.get("/ops/queues/");
      expect(board.status, user).toBe(200);
      expect(board.html).toContain("__UI_CONFIG__");
      const api = await b.get("/ops/queues/api/queues");
      expect(api.status).toBe(200);
      expect(JSON.parse(api.html).queues.map((q: { name: string }) => q.name).sort()).toEqual(["fanout", "notify", "purge", "timers"]);
    }
    const ops = await signIn("ops");
    const crossWrite = await raw("/ops/queues/api/queues/pause", { method: "PUT", headers: { cookie: ops.cookie, "sec-fetch-site": "cross-site" } });
    expect(crossWrite.status).toBe(403);
    // Read-only even from our own origin: a job added there would bypass the audit trail.
    const sameOriginWrite = await raw("/ops/queues/api/queues/notify/add", { method: "POST", headers: { cookie: ops.cookie, ...sameOrigin, "content-type": "application/json" }, body: JSON.stringify({ name: "planted-by-board", data: {} }) });
    expect(sameOriginWrite.status).toBeGreaterThanOrEqual(400);
    expect(sameOriginWrite.status).toBeLessThan(500);
    const pause = await raw("/ops/queues/api/queues/fanout/pause", { method: "PUT", headers: { cookie: ops.cookie, ...sameOrigin } });
    expect(pause.status).toBeGreaterThanOrEqual(400);
    expect(await a.rt.scheduler.fanout.isPaused()).toBe(false);
    // (Not a count: notifications of the other tests come and go meanwhile.)
    const jobs = await a.rt.scheduler.notifications.getJobs(["waiting", "delayed", "active", "completed", "failed", "prioritized"]);
    expect(jobs.some((j) => j.name === "planted-by-board")).toBe(false);
  });

  it("streams events to a signed-in browser", async () => {
    const b = await signIn("approver1");
    const ac = new AbortController();
    const res = await fetch(a.url + "/api/stream", { headers: { cookie: b.cookie }, signal: ac.signal });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Streamed", text: "x", audience: { lists: ["team"] } })).body;
    let seen = "";
    const deadline = Date.now() + 10_000;
    while (!seen.includes(`"id":"${m.id}"`) && Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    ac.abort();
    expect(seen).toContain("event: state");
    expect(seen).toContain(`"id":"${m.id}"`);
  });
});

describe("development outbox", () => {
  it("lists the mails written to the outbox and shows one as text, to signed-in users only", async () => {
    const dev = await startAirlock({ SMTP_URL: "", TRUST_PROXY_HOPS: "1" }); // unset: mail goes to <data>/outbox
    try {
      const m = (await dev.call("author", "POST", "/api/messages", { subject: "Outbox check ünïcode", text: "x", audience: { addresses: ["z@corp.example"] } })).body;
      expect(m.id).toBeDefined();
      const signin = await fetch(`${dev.url}/signin`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", ...sameOrigin }, body: new URLSearchParams({ token: tokenOf("ops") }) });
      const cookie = (signin.headers.get("set-cookie") ?? "").split(";")[0]!;
      expect(signin.headers.get("set-cookie")).not.toMatch(/;\s*Secure/i); // plain HTTP, no proxy said otherwise
      // Behind a TLS-terminating proxy (one trusted hop) the cookie is Secure.
      const viaTls = await fetch(`${dev.url}/signin`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", "x-forwarded-proto": "https", ...sameOrigin }, body: new URLSearchParams({ token: tokenOf("ops") }) });
      expect(viaTls.headers.get("set-cookie")).toMatch(/;\s*Secure/i);
      const list = async () => (await fetch(`${dev.url}/outbox`, { headers: { cookie } })).text();
      // The approval requests are written by the notify worker in the background.
      const html = await dev.until("approval request in the outbox", async () => ((await list()).includes("Outbox check ünïcode") ? list() : undefined));
      expect(html).toContain(USERS.approver1.email);
      const name = /href="\/outbox\/([^"]+)"/.exec(html)?.[1];
      expect(name).toBeDefined();
      const one = await fetch(`${dev.url}/outbox/${name}`, { headers: { cookie } });
      expect(one.status).toBe(200);
      expect(one.headers.get("content-type")).toContain("text/plain");
      expect(await one.text()).toMatch(/^Message-ID: /m);
      expect((await fetch(`${dev.url}/outbox/..%2Fusers.json`, { headers: { cookie } })).status).toBe(404);
      expect((await fetch(`${dev.url}/outbox`, { redirect: "manual" })).status).toBe(303);
      // Its mails hold approvers' working links: an author may not read them.
      const authorIn = await fetch(`${dev.url}/signin`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", ...sameOrigin }, body: new URLSearchParams({ token: tokenOf("author") }) });
      const authorCookie = (authorIn.headers.get("set-cookie") ?? "").split(";")[0]!;
      expect((await fetch(`${dev.url}/outbox`, { headers: { cookie: authorCookie } })).status).toBe(403);
      expect((await fetch(`${dev.url}/outbox/${name}`, { headers: { cookie: authorCookie } })).status).toBe(403);
    } finally {
      await dev.stop();
    }
    // With SMTP configured there is no outbox page.
    const b = await signIn("ops");
    const none = await b.get("/outbox");
    expect(none.status).toBe(404);
    expect(none.html).toContain("<h1>Not found</h1>");
  });
});
