import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runInNewContext } from "node:vm";
import { describe, expect, it } from "vitest";
import { createPageRenderer } from "../../src/http/pages.js";
import { templatesDir } from "../../src/mail/render.js";
import type { ConfirmPageData, LinkAction, MessageSummary, ResultPageData, SentMail } from "../../src/notify/notification-data.js";

const pages = createPageRenderer();
const XSS = `<script>alert("x")</script>`;

const message: MessageSummary = {
  id: "42",
  revision: 2,
  subject: "Delete TikTok from your phone",
  from: "Internal Communications <comms@corp.example>",
  author: "alice@corp.example",
  authorName: "Alice Martin",
  recipientCount: 840_000,
  audiences: [{ name: "all-staff", count: 812_345 }],
  explicitCount: 12,
  text: "Hello all,\n\nPlease delete the app.",
  html: null,
  dashboardUrl: "https://airlock.corp.example/messages/42",
};

/** The mail as built for sending (its shape; the build itself is tested with compose.ts). */
const mail: SentMail = {
  of: "original",
  revision: 2,
  subject: "Delete TikTok from your phone",
  from: "Internal Communications <comms@corp.example>",
  text: "Delete TikTok from your phone\n\nHello all,\n\nPlease delete the app.\n\n--\nSent by Internal Communications <comms@corp.example>\n",
  html: "<!DOCTYPE html><html><body><p style=\"margin:0\">Hello all,</p></body></html>",
  digest: "ab".repeat(32),
};

function confirmData(action: LinkAction, over: Partial<ConfirmPageData> = {}): ConfirmPageData {
  return {
    action,
    formAction: "/links/tok123.sig456",
    holderName: "Bob Approver",
    message,
    state: "pending_approval",
    stateLabel: "Waiting for approval",
    approvalsRequired: 2,
    approvalsGiven: 1,
    releaseAt: null,
    delivered: 0,
    mail,
    htmlPreviewUrl: `/links/tok123.sig456/preview?digest=${mail.digest}`,
    submittedDigest: null,
    domains: [],
    recall: null,
    values: { comment: "", reason: "", correctionText: "" },
    errors: null,
    ...over,
  };
}

/** The opening tag of the element with this id. */
function tagWithId(html: string, id: string): string {
  const m = html.match(new RegExp(`<[a-z]+[^>]*\\bid="${id}"[^>]*>`));
  if (!m) throw new Error(`no element with id ${id}`);
  return m[0];
}

/** Every textarea/input (not hidden) has a <label for> pointing at its id. */
function expectLabelled(html: string) {
  const controls = [...html.matchAll(/<(textarea|input)\b[^>]*>/g)].map((m) => m[0]).filter((t) => !/type="hidden"/.test(t));
  expect(controls.length).toBeGreaterThan(0);
  for (const c of controls) {
    const id = c.match(/\bid="([^"]+)"/)?.[1];
    expect(id, c).toBeTruthy();
    expect(html).toContain(`<label for="${id}">`);
  }
}

/** What the strict CSP (default-src 'self') would block, or what a page must carry. */
function expectCspSafeDocument(html: string) {
  expect(html).toMatch(/^<!DOCTYPE html>\n<html lang="en">/);
  expect(html).toContain(`<meta name="viewport" content="width=device-width, initial-scale=1">`);
  expect(html).toContain(`<meta name="robots" content="noindex">`);
  expect(html).toContain(`<meta name="referrer" content="no-referrer">`);
  expect(html).toContain(`<link rel="stylesheet" href="/static/airlock.css">`);
  // Without an icon of its own the browser asks for /favicon.ico, a 404 on every page view.
  expect(html).toContain(`<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">`);
  expect(html).not.toMatch(/\sstyle=/i);
  expect(html).not.toMatch(/<style/i);
  expect(html).not.toMatch(/\son[a-z]+=/i);
  for (const script of html.match(/<script\b[^>]*>/gi) ?? []) expect(script).toBe(`<script src="/static/links.js" defer>`);
  expect(html).not.toMatch(/<script[^>]*>[^<]/i);
  expect(html.match(/<h1\b/g)).toHaveLength(1);
}

describe("confirm page", () => {
  const cases: Array<[LinkAction, string, string]> = [
    ["approve", "Approve this message?", "Approve"],
    ["reject", "Reject this message?", "Reject"],
    ["recall", "Recall this message?", "Recall message"],
  ];
  for (const [action, title, button] of cases) {
    it(`${action}: title, summary, preview and a form that posts the action`, () => {
      const html = pages.confirm(confirmData(action, { delivered: 1_234, releaseAt: action === "recall" ? "22 November 2026, 14:05 UTC" : null }));
      expectCspSafeDocument(html);
      expectLabelled(html);
      expect(html).toContain(`<title>${title} · Airlock</title>`);
      expect(html).toContain(`<h1>${title}</h1>`);
      expect(html).toContain(`<form method="post" action="/links/tok123.sig456"`);
      expect(html).toContain(`<input type="hidden" name="action" value="${action}">`);
      expect(html).toMatch(new RegExp(`<button type="submit"[^>]*>${button}</button>`));
      expect(html.match(/<form\b/g)).toHaveLength(1);
      // The summary
      expect(html).toContain("<dd>Delete TikTok from your phone</dd>");
      expect(html).toContain("<dd>Internal Communications &lt;comms@corp.example&gt;</dd>");
      expect(html).toContain("<dd>Alice Martin &lt;alice@corp.example&gt;</dd>");
      expect(html).toContain("<strong>840,000 recipients</strong> in total");
      expect(html).toContain("<li>all-staff: 812,345</li>");
      expect(html).toContain("<li>Explicit addresses: 12</li>");
      expect(html).toContain("<dt>Revision</dt>\n<dd>2</dd>");
      expect(html).toContain("<dd>Waiting for approval</dd>");
      expect(html).toContain("<dd>1 of 2 required</dd>");
      expect(html).toContain("Bob Approver");
      // The mail exactly as sent: the text part verbatim, the HTML part in a sandboxed frame of its own, the digest.
      expect(html).toContain(`<pre class="text-part" role="region" aria-labelledby="text-part-heading" tabindex="0">Delete TikTok from your phone\n\nHello all,\n\nPlease delete the app.\n\n--\nSent by Internal Communications &lt;comms@corp.example&gt;\n</pre>`);
      expect(html).toContain(`<iframe class="preview-frame" src="/links/tok123.sig456/preview?digest&#x3D;${mail.digest}" title="The HTML part, as recipients will see it" sandbox></iframe>`);
      expect(html).toContain(`<dt>Digest</dt>\n<dd><code class="digest">${mail.digest}</code></dd>`);
      expect(html).not.toContain("margin:0"); // the HTML part is never inlined into the page
    });
  }

  it("approve: an optional comment, no reason", () => {
    const html = pages.confirm(confirmData("approve"));
    expect(tagWithId(html, "comment")).toMatch(/^<textarea[^>]*name="comment"/);
    expect(tagWithId(html, "comment")).not.toContain("required");
    expect(html).not.toContain(`name="reason"`);
    expect(html).not.toContain(`name="correctionText"`);
    expect(html).not.toContain("<dt>Release</dt>");
  });

  it("reject: a required reason", () => {
    const html = pages.confirm(confirmData("reject"));
    expect(tagWithId(html, "reason")).toMatch(/^<textarea[^>]*name="reason"[^>]*\brequired\b/);
    expect(html).toContain(`<label for="reason">Reason <span class="required">(required)</span></label>`);
    expect(html).not.toContain(`name="comment"`);
    expect(html).not.toContain(`name="correctionText"`);
  });

  it("recall: a required reason, optional correction text, the delivered count and the release time", () => {
    const html = pages.confirm(confirmData("recall", { delivered: 1_234, releaseAt: "22 November 2026, 14:05 UTC" }));
    expect(tagWithId(html, "reason")).toMatch(/\brequired\b/);
    expect(tagWithId(html, "correctionText")).toMatch(/^<textarea[^>]*name="correctionText"/);
    expect(tagWithId(html, "correctionText")).not.toContain("required");
    expect(html).toContain("1,234 people received it so far; they will receive the correction notice");
    expect(html).toContain("<dt>Release</dt>\n<dd>22 November 2026, 14:05 UTC</dd>");
    expect(html).not.toContain(`name="comment"`);
  });

  it("recall with nobody reached yet says no correction is needed", () => {
    const html = pages.confirm(confirmData("recall", { delivered: 0 }));
    expect(html).toContain("Nobody has received it so far");
    expect(html).not.toContain("received it so far; they will receive");
  });

  it("shows errors next to their field, tied by aria-describedby, and puts the values back", () => {
    const html = pages.confirm(
      confirmData("recall", {
        values: { comment: "", reason: `  ${XSS}`, correctionText: "Keep the app & relax" },
        errors: { reason: "Say why you recall it.", correctionText: "Too long." },
      }),
    );
    expect(html).toContain(`<p id="reason-error" class="field-error" role="alert">Say why you recall it.</p>`);
    expect(html).toContain(`<p id="correctionText-error" class="field-error" role="alert">Too long.</p>`);
    const reason = tagWithId(html, "reason");
    expect(reason).toContain(`aria-describedby="reason-hint reason-error"`);
    expect(reason).toContain(`aria-invalid="true"`);
    expect(tagWithId(html, "correctionText")).toContain(`aria-describedby="correctionText-hint correctionText-error"`);
    // The newline after the tag is eaten by the HTML parser, so a value's own leading whitespace survives.
    expect(html).toContain(`aria-invalid="true">\n  &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;</textarea>`);
    expect(html).toContain(">\nKeep the app &amp; relax</textarea>");
    expect(html).toMatch(/<title>Error: Recall this message\?/);
    expect(html).not.toMatch(/<script>/);
  });

  it("without errors, marks nothing invalid", () => {
    const html = pages.confirm(confirmData("reject", { values: { comment: "", reason: "kept", correctionText: "" } }));
    expect(html).not.toContain("aria-invalid");
    expect(html).not.toContain(`role="alert"`);
    expect(tagWithId(html, "reason")).toContain(`aria-describedby="reason-hint"`);
    expect(html).toContain(">\nkept</textarea>");
  });

  it("escapes the subject, names and the text part; never inlines the HTML part", () => {
    const html = pages.confirm(
      confirmData("approve", {
        holderName: `Bob ${XSS}`,
        message: { ...message, subject: `Hi ${XSS} & bye`, authorName: `Eve ${XSS}`, html: `<p onclick="x()">Hi <b>all</b></p>${XSS}<img src=x onerror=alert(1)>` },
        mail: { ...mail, subject: `Hi ${XSS}`, text: `Hi ${XSS}\n<img src=x onerror=alert(1)>`, html: `<img src=x onerror=alert(1)>${XSS}` },
      }),
    );
    expect(html).not.toMatch(/<script>|<img|onclick/i);
    expect(html).toContain("<dd>Hi &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; bye</dd>");
    expect(html).toContain("Eve &lt;script&gt;");
    expect(html).toContain("Hello Bob &lt;script&gt;");
    expect(html).toContain("&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt;</pre>");
    expectCspSafeDocument(html);
  });

  it("approve and approveCorrection: the form carries the digest shown; the others do not", () => {
    for (const action of ["approve", "approveCorrection"] as const) {
      const html = pages.confirm(confirmData(action));
      expect(html).toContain(`<input type="hidden" name="digest" value="${mail.digest}">`);
      expect(tagWithId(html, "comment")).toMatch(/^<textarea/);
    }
    for (const action of ["reject", "recall", "rejectCorrection"] as const) expect(pages.confirm(confirmData(action))).not.toContain(`name="digest"`);
  });

  it("correction actions: the correction as it would go out, who recalled and why, a reason to reject", () => {
    const correction = { ...mail, of: "correction" as const, subject: "Correction: Delete TikTok from your phone" };
    const approve = pages.confirm(confirmData("approveCorrection", { mail: correction, recall: { by: "carol@corp.example", reason: "Wrong audience" }, approvalsGiven: 0, approvalsRequired: 1 }));
    expectCspSafeDocument(approve);
    expectLabelled(approve);
    expect(approve).toContain("<h1>Approve this correction?</h1>");
    expect(approve).toContain("The correction, exactly as it would go out");
    expect(approve).toContain("<dd>Correction: Delete TikTok from your phone</dd>");
    expect(approve).toContain("<dt>Recalled by</dt>\n<dd>carol@corp.example</dd>");
    expect(approve).toContain("<dd>Wrong audience</dd>");
    expect(approve).toContain("<dt>Approvals of the correction</dt>\n<dd>0 of 1 required</dd>");
    expect(approve).toMatch(/<button type="submit" class="button button--approve">Approve correction<\/button>/);
    const reject = pages.confirm(confirmData("rejectCorrection", { mail: correction, recall: { by: "carol@corp.example", reason: "x" } }));
    expectLabelled(reject);
    expect(tagWithId(reject, "reason")).toMatch(/\brequired\b/);
    expect(reject).toContain("The standard correction goes instead.");
    expect(reject).toMatch(/<button type="submit" class="button button--reject">Reject text<\/button>/);
  });

  it("shows recipients by domain per audience, and says when the list changed since submission", () => {
    const html = pages.confirm(
      confirmData("approve", {
        domains: [{ name: "all-staff", changedSinceSubmit: true, domains: [{ domain: "corp.example", count: 812_000 }, { domain: "eu.corp.example", count: 345 }] }],
      }),
    );
    expect(html).toContain("<h2 id=\"domains-heading\">Recipients by domain</h2>");
    expect(html).toContain("<li>corp.example: 812,000</li>");
    expect(html).toContain("<li>eu.corp.example: 345</li>");
    expect(html).toContain("This list changed since the message was submitted");
    expect(pages.confirm(confirmData("approve"))).not.toContain("Recipients by domain");
  });

  it("warns when what would go out is not what was submitted", () => {
    const html = pages.confirm(confirmData("approve", { submittedDigest: "cd".repeat(32) }));
    expect(html).toContain(`role="alert"><strong>What would go out now is not what was submitted</strong> (digest ${"cd".repeat(32)} then, ${mail.digest} now)`);
    expect(pages.confirm(confirmData("approve"))).not.toContain("What would go out now");
  });
});

describe("result page", () => {
  const result = (over: Partial<ResultPageData> = {}): ResultPageData => ({
    tone: "success",
    heading: "Approved",
    detail: "It goes out at 14:05 UTC unless someone recalls it.",
    message,
    dashboardUrl: "https://airlock.corp.example/messages/42",
    ...over,
  });

  it.each([
    ["success", "Done"],
    ["info", "Nothing to do"],
    ["warning", "Not done"],
  ] as const)("%s: styled by tone, with a text label, heading and detail", (tone, label) => {
    const html = pages.result(result({ tone }));
    expectCspSafeDocument(html);
    expect(html).toContain(`<div class="result result--${tone}">\n<p class="result__label">${label}</p>\n<h1>Approved</h1>`);
    expect(html).toContain(`<p class="result__detail">It goes out at 14:05 UTC unless someone recalls it.</p>`);
    expect(html).toContain(`<a class="button-link" href="https://airlock.corp.example/messages/42">Open the dashboard</a>`);
    expect(html).not.toContain("/static/links.js");
    expect(html).not.toContain("<form");
  });

  it("shows the message summary when there is one, and none otherwise", () => {
    expect(pages.result(result())).toContain("<dd>Delete TikTok from your phone</dd>");
    const bare = pages.result(result({ tone: "warning", heading: "Link expired", detail: "Ask for a new one.", message: null, dashboardUrl: "https://airlock.corp.example/" }));
    expect(bare).not.toContain("<dl");
    expect(bare).toContain(`<title>Link expired · Airlock</title>`);
    expect(bare).toContain(`href="https://airlock.corp.example/"`);
  });

  it("escapes heading and detail, and falls back to the neutral tone for an unknown one", () => {
    const html = pages.result(result({ tone: "bogus" as never, heading: `H ${XSS}`, detail: `D & ${XSS}` }));
    expect(html).not.toMatch(/<script>/);
    expect(html).toContain("<h1>H &lt;script&gt;");
    expect(html).toContain("D &amp; &lt;script&gt;");
    expect(html).toContain(`class="result result--info"`);
  });
});

describe("static files", () => {
  const dir = join(templatesDir(), "static");

  it("the icon the pages link to exists", () => {
    expect(readFileSync(join(dir, "favicon.svg"), "utf8")).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  });

  it("the stylesheet has a visible focus style", () => {
    const css = readFileSync(join(dir, "airlock.css"), "utf8");
    expect(css).toMatch(/:focus-visible\s*\{[^}]*outline:\s*3px solid/);
    for (const cls of ["result--success", "result--info", "result--warning", "field-error", "button--approve", "button--reject", "button--recall"]) expect(css).toContain(`.${cls}`);
  });

  /** Runs links.js against a minimal fake DOM: what it does on load, and on submit. */
  function loadLinksJs() {
    const listeners: Record<string, Array<(e: unknown) => void>> = {};
    const timers: Array<() => void> = [];
    class HTMLFormElement {
      dataset: Record<string, string> = {};
      button = { disabled: false };
      submitted = 0;
      querySelectorAll() {
        return [this.button];
      }
      submit() {
        this.submitted++;
      }
      requestSubmit() {
        this.submitted++;
      }
    }
    const form = new HTMLFormElement();
    const on = (target: string) => (type: string, fn: (e: unknown) => void) => (listeners[`${target}:${type}`] ??= []).push(fn);
    const document = { addEventListener: on("document"), querySelectorAll: () => (form.dataset.submitted ? [form] : []) };
    const window = { addEventListener: on("window") };
    runInNewContext(readFileSync(join(dir, "links.js"), "utf8"), { document, window, HTMLFormElement, setTimeout: (fn: () => void) => timers.push(fn) });
    const submit = () => {
      const e = { target: form, defaultPrevented: false, preventDefault() { this.defaultPrevented = true; } };
      for (const fn of listeners["document:submit"] ?? []) fn(e);
      for (const t of timers.splice(0)) t();
      return e.defaultPrevented;
    };
    return { listeners, form, submit, timers };
  }

  it("links.js changes nothing on load and never submits", () => {
    const { listeners, form, timers } = loadLinksJs();
    expect(Object.keys(listeners).sort()).toEqual(["document:submit", "window:pageshow"]);
    expect(form.button.disabled).toBe(false);
    expect(form.dataset).toEqual({});
    expect(timers).toHaveLength(0);
    expect(form.submitted).toBe(0);
  });

  it("links.js lets the first submit through, then disables the button and ignores a second one", () => {
    const { form, submit, listeners } = loadLinksJs();
    expect(submit()).toBe(false);
    expect(form.button.disabled).toBe(true);
    expect(submit()).toBe(true);
    expect(form.submitted).toBe(0);
    // Restored from the back/forward cache: usable again.
    for (const fn of listeners["window:pageshow"]!) fn({ persisted: true });
    expect(form.button.disabled).toBe(false);
    expect(submit()).toBe(false);
  });
});
