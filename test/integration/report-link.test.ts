/**
 * The "Report a problem with this message" link over real HTTP: an express app with just the report
 * router (behind the same kind of rate limiter app.ts puts in front of /links) and a sink that
 * records calls and counts a dedupe key once, as the store does. The full app's wiring is the
 * lead's; this is the route's contract.
 */
import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import express from "express";
import { rateLimit } from "express-rate-limit";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { ReplicationLagError } from "../../src/domain/errors.js";
import { createReportPages } from "../../src/http/report-pages.js";
import { NOTE_MAX_CHARS, REPORTER_COOKIE, reportRateLimited, reportRoutes } from "../../src/http/routes/report.js";
import { ReportLinks } from "../../src/waves/report-link.js";
import type { SignalAnswer, SignalEvidence, SignalSink } from "../../src/waves/signals.js";

const links = new ReportLinks("report-test-secret-0123456789abcdef0123456789", "https://airlock.corp.example");
const XSS_SUBJECT = `<script>alert("x")</script> & "Q3" <b>numbers</b>`;
const subjects = new Map<string, string>([
  ["42", "Changes to the holiday calendar"],
  ["43", XSS_SUBJECT],
  ["44", "Never sent"],
]);

interface Call {
  id: string;
  kind: string;
  evidence: Omit<SignalEvidence, "kind" | "at">;
  dedupe: string;
}
let calls: Call[] = [];
let seen = new Set<string>();
/** What the next record() does instead of counting, when set. */
let failNext: (() => Promise<SignalAnswer>) | null = null;

const sink: SignalSink = {
  async record(id, kind, evidence, dedupe) {
    calls.push({ id, kind, evidence, dedupe });
    if (failNext) {
      const f = failNext;
      failNext = null;
      return f();
    }
    if (id === "44") return { ok: false, err: "not_sent" };
    if (!subjects.has(id)) return { ok: false, err: "not_found" };
    const key = `${id}\n${dedupe}`;
    const counted = !seen.has(key);
    seen.add(key);
    return { ok: true, counted, halted: false };
  },
};

/** An app with just the report router, behind a limiter like app.ts's for /links (`limit` per minute). */
async function startApp(limit: number): Promise<{ server: Server; base: string }> {
  const app = express();
  const pages = createReportPages();
  app.use(
    "/report",
    rateLimit({ windowMs: 60_000, limit, standardHeaders: "draft-8", legacyHeaders: false, handler: reportRateLimited(pages) }),
    reportRoutes({ links, sink, pages, publicUrl: "http://127.0.0.1", subject: async (id) => (subjects.has(id) ? { subject: subjects.get(id)! } : null) }),
  );
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  return { server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}
const servers: Server[] = [];
let base: string;

beforeAll(async () => {
  const a = await startApp(10_000);
  servers.push(a.server);
  base = a.base;
});
afterAll(() => Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())))));
beforeEach(() => {
  calls = [];
  seen = new Set();
  failNext = null;
});

async function page(method: string, token: string, o: { form?: Record<string, string>; cookie?: string; headers?: Record<string, string> } = {}) {
  const headers: Record<string, string> = { ...(o.cookie ? { cookie: o.cookie } : {}), ...o.headers };
  const res = await fetch(`${base}/report/${token}`, { method, headers, body: o.form ? new URLSearchParams(o.form) : undefined });
  return { status: res.status, html: await res.text(), headers: res.headers, setCookie: res.headers.getSetCookie() };
}

/** The reporter cookie a response set, as a Cookie header value. */
function cookieOf(setCookie: string[]): string {
  const c = setCookie.find((s) => s.startsWith(`${REPORTER_COOKIE}=`));
  if (!c) throw new Error(`no ${REPORTER_COOKIE} cookie in ${JSON.stringify(setCookie)}`);
  return c.split(";")[0]!;
}

describe("GET /report/:token", () => {
  it("shows which message and the form, and changes nothing (scanners open every link)", async () => {
    const token = links.token("42");
    const p = await page("GET", token);
    expect(p.status).toBe(200);
    expect(p.html).toContain("Report a problem with this message?");
    expect(p.html).toContain("<dd>Changes to the holiday calendar</dd>");
    expect(p.html).toMatch(/<form method="post" action="\/report\/42\.[A-Za-z0-9_-]{22}"/);
    expect(p.html).toContain(`action="/report/${token}"`);
    expect(p.html).toMatch(/<textarea id="note" name="note"[^>]*maxlength="500"/);
    expect(p.html).toContain("What is wrong <span class=\"optional\">(optional)</span>");
    expect(p.html).toMatch(/<button type="submit"[^>]*>Report the problem<\/button>/);
    // The approver pages' frame: same layout and stylesheet.
    expect(p.html).toContain('<link rel="stylesheet" href="/static/airlock.css">');
    expect(p.headers.get("cache-control")).toBe("no-store");
    expect(p.headers.get("content-security-policy")).toContain("default-src 'none'");
    // Served under the page CSP: no inline style or script (links.js, from /static, only stops a double POST).
    expect(p.html).not.toMatch(/\sstyle=|<style/i);
    expect(p.html).not.toMatch(/<script(?![^>]*\ssrc="\/static\/links\.js")/);
    expect(p.setCookie).toEqual([]);

    const head = await page("HEAD", token);
    expect(head.status).toBe(200);
    expect(calls).toEqual([]);
  });

  it("escapes the subject", async () => {
    const p = await page("GET", links.token("43"));
    expect(p.status).toBe(200);
    expect(p.html).not.toContain("<script>alert");
    expect(p.html).not.toContain("<b>numbers</b>");
    expect(p.html).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &quot;Q3&quot; &lt;b&gt;numbers&lt;/b&gt;");
  });
});

describe("POST /report/:token", () => {
  it("counts a report once, with the note, keyed by a cookie it sets (HttpOnly, SameSite=Lax, path /report)", async () => {
    const token = links.token("42");
    const p = await page("POST", token, { form: { note: "The dates in the table are last year's." } });
    expect(p.status).toBe(200);
    expect(p.html).toContain("Your report was passed on");
    expect(p.html).toContain("<dd>Changes to the holiday calendar</dd>");
    expect(p.setCookie).toHaveLength(1);
    const [cookie] = p.setCookie;
    expect(cookie).toMatch(new RegExp(`^${REPORTER_COOKIE}=[A-Za-z0-9_-]{22}; `));
    expect(cookie).toMatch(/; Path=\/report(;|$)/);
    expect(cookie).toMatch(/; HttpOnly(;|$)/);
    expect(cookie).toMatch(/; SameSite=Lax(;|$)/i);
    expect(cookie).toMatch(/; Max-Age=\d+/);
    const id = cookieOf(p.setCookie).split("=")[1];
    expect(calls).toEqual([{ id: "42", kind: "report", evidence: { excerpt: "The dates in the table are last year's." }, dedupe: `report:${id}` }]);
  });

  it("counts a second POST from the same browser once (same dedupe key), another browser apart", async () => {
    const token = links.token("42");
    const first = await page("POST", token, { form: { note: "" } });
    const cookie = cookieOf(first.setCookie);
    const again = await page("POST", token, { form: { note: "And the footer is wrong too." }, cookie });
    expect(again.status).toBe(200);
    expect(again.html).toContain("You already reported this message");
    expect(again.setCookie).toEqual([]); // the id it has is kept
    expect(calls).toHaveLength(2);
    expect(calls[1]!.dedupe).toBe(calls[0]!.dedupe);
    expect(calls[0]!.evidence).toEqual({}); // an empty note is no excerpt

    const other = await page("POST", token, { form: { note: "" } });
    expect(other.html).toContain("Your report was passed on");
    expect(calls[2]!.dedupe).not.toBe(calls[0]!.dedupe);

    // The same browser on another message: a report of its own (the store dedupes per message).
    const elsewhere = await page("POST", links.token("43"), { form: { note: "" }, cookie });
    expect(elsewhere.html).toContain("Your report was passed on");
    expect(calls[3]).toMatchObject({ id: "43", dedupe: calls[0]!.dedupe });
  });

  it("replaces a cookie that is not one of its ids", async () => {
    const p = await page("POST", links.token("42"), { form: { note: "" }, cookie: `${REPORTER_COOKIE}=../../x; other=1` });
    expect(p.status).toBe(200);
    const id = cookieOf(p.setCookie).split("=")[1];
    expect(calls[0]!.dedupe).toBe(`report:${id}`);
  });

  it("answers a forged or malformed token with a 404 page naming the problem, and records nothing", async () => {
    const good = links.token("42");
    const other = new ReportLinks("another-secret-0123456789abcdef0123456789ab", "https://x.example").token("42");
    const forged = [
      other, // signed with another secret
      good.replace(/^42\./, "43."), // another message's id with this one's tag
      good.slice(0, -1) + (good.endsWith("A") ? "B" : "A"), // tampered tag
      "42", // no tag
      "42.short",
      "abc.AbCdEfGhIjKlMnOpQrStUv",
      "0" + good, // leading zero
      "%3Cscript%3E",
    ];
    for (const token of forged) {
      for (const method of ["GET", "POST"]) {
        const p = await page(method, token, method === "POST" ? { form: { note: "x" } } : {});
        expect(p.status, `${method} ${token}`).toBe(404);
        expect(p.html).toContain("This report link is not valid");
        expect(p.html).toContain("Nothing was recorded.");
        expect(p.html).not.toContain("<script>");
        expect(p.setCookie).toEqual([]);
      }
    }
    expect(calls).toEqual([]);
  });

  it("refuses a note over 500 characters with the form again (note kept), and records nothing", async () => {
    const token = links.token("42");
    const long = "x".repeat(NOTE_MAX_CHARS + 1);
    const p = await page("POST", token, { form: { note: long } });
    expect(p.status).toBe(400);
    expect(p.html).toContain("Write at most 500 characters (this note has 501)");
    expect(p.html).toContain(`aria-invalid="true"`);
    expect(p.html).toContain(`\n${long}</textarea>`);
    expect(p.setCookie).toEqual([]);
    expect(calls).toEqual([]);
  });

  it("counts line breaks as one character, as the textarea's maxlength does", async () => {
    // 250 lines of "a" + CRLF as a browser submits them: 750 bytes, 500 characters for maxlength.
    const note = "a\r\n".repeat(249) + "ab";
    const p = await page("POST", links.token("42"), { form: { note } });
    expect(p.status).toBe(200);
    expect(calls[0]!.evidence.excerpt).toBe("a\n".repeat(249) + "ab");
  });

  it("keeps the note as text (controls dropped) and escapes it when shown again", async () => {
    const p = await page("POST", links.token("42"), { form: { note: `  <img src=x onerror=alert(1)>\u0007 bad\tdates ` } });
    expect(p.status).toBe(200);
    expect(calls[0]!.evidence.excerpt).toBe("<img src=x onerror=alert(1)> bad dates");
    const again = await page("POST", links.token("42"), { form: { note: `<img src=x>${"y".repeat(600)}` } });
    expect(again.status).toBe(400);
    expect(again.html).not.toContain("<img src=x>");
    expect(again.html).toContain("&lt;img src&#x3D;x&gt;"); // Handlebars escapes "=" too
  });

  it("refuses a POST from another site, and a body that is not the form", async () => {
    const token = links.token("42");
    const cross = await page("POST", token, { form: { note: "x" }, headers: { "sec-fetch-site": "cross-site" } });
    expect(cross.status).toBe(403);
    expect(cross.html).toContain("this request came from another site");
    const json = await fetch(`${base}/report/${token}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ note: "x" }) });
    expect(json.status).toBe(415);
    expect(await json.text()).toContain("Send the report form");
    const huge = await page("POST", token, { form: { note: "x".repeat(20_000) } });
    expect(huge.status).toBe(413);
    expect(huge.html).toContain("This request could not be read");
    expect(calls).toEqual([]);
  });

  it("names a message that does not exist or was never sent, without counting", async () => {
    const gone = await page("GET", links.token("999"));
    expect(gone.status).toBe(404);
    expect(gone.html).toContain("This message is not known here");
    const goneP = await page("POST", links.token("999"), { form: { note: "" } });
    expect(goneP.status).toBe(404);
    expect(calls).toEqual([]); // the subject lookup found nothing: the sink was not asked

    const unsent = await page("POST", links.token("44"), { form: { note: "" } });
    expect(unsent.status).toBe(409);
    expect(unsent.html).toContain("This message was not sent");
    expect(unsent.html).toContain("Nothing was recorded.");
  });

  it("answers a store failure with a page, and the retry from the same browser keeps its key", async () => {
    const token = links.token("42");
    failNext = () => Promise.reject(new Error("Connection is closed."));
    const down = await page("POST", token, { form: { note: "" } });
    expect(down.status).toBe(503);
    expect(down.html).toContain("Your report could not be recorded now");
    const cookie = cookieOf(down.setCookie);

    failNext = () => Promise.reject(new ReplicationLagError(0, 1, 100));
    const lag = await page("POST", token, { form: { note: "" }, cookie });
    expect(lag.status).toBe(503);
    expect(lag.html).toContain("Recorded, not yet confirmed");

    const ok = await page("POST", token, { form: { note: "" }, cookie });
    expect(ok.status).toBe(200);
    expect(new Set(calls.map((c) => c.dedupe)).size).toBe(1);
  });
});

describe("rate limit", () => {
  it("answers a page with 429 once a client is over the links' limit, and records nothing", async () => {
    const limited = await startApp(3);
    servers.push(limited.server);
    const statuses: number[] = [];
    let html = "";
    for (let i = 1; i <= 4; i++) {
      const res = await fetch(`${limited.base}/report/${links.token("42")}`, { method: "POST", body: new URLSearchParams({ note: "" }) });
      statuses.push(res.status);
      html = await res.text();
    }
    expect(statuses).toEqual([200, 200, 200, 429]);
    expect(html).toContain("Too many requests");
    expect(html).toContain("Nothing was recorded.");
    expect(calls).toHaveLength(3);
  });
});
