/**
 * A Markdown body in a house template: both parts rendered from the one source, raw HTML shown as
 * text, only safe links, the company settings in every template, the same bytes every time.
 */
import { simpleParser } from "mailparser";
import { describe, expect, it } from "vitest";
import { composeOriginal } from "../../src/mail/compose.js";
import { createRenderer, DEFAULT_HOUSE_STYLE, templatesDir } from "../../src/mail/render.js";

const renderer = createRenderer(templatesDir());
const acme = createRenderer(templatesDir(), { companyName: "Acme & Sons", logoUrl: "https://cdn.acme.example/logo.png?v=1&s=2", footer: "Acme internal: do not forward." });
const from = "Internal Communications <comms@corp.example>";

const SOURCE = `# Office move

We move on **Friday**, see *the plan* at https://intranet.corp.example/move or [the map](https://maps.corp.example/?a=1&b=2).

## What to do

1. Pack your desk
2. Label boxes
   - with your name
   - and your floor

Run \`pack --all\` first:

\`\`\`
pack --all --label "<desk>"
\`\`\`

> Questions? Write to hr@corp.example.
`;

const render = (markdown: string, template?: string, r = renderer) => r.renderMessage({ subject: "Office move", text: "", markdown, ...(template ? { template } : {}), from });

/** The body of the HTML part: between the house template's body cell markers. */
function body(html: string): string {
  const start = html.indexOf('<td class="airlock-body"');
  return html.slice(html.indexOf(">", start) + 1, html.indexOf("</td>", start));
}

/** Every tag markdown-it may leave in the body: the Markdown allow-list, links only with a safe href. */
const MARKDOWN_TAG = /^<(?:\/?(?:p|b|strong|i|em|u|ul|ol|li|a|h[1-6]|blockquote|table|tr|td|th|thead|tbody|span|div|pre|code)|br \/|hr \/|a href="(?:https?:\/\/|mailto:)[^"<>]*")>$/;
function expectOnlyMarkdownTags(html: string) {
  for (const tag of html.match(/<[^>]*>?/g) ?? []) expect(tag).toMatch(MARKDOWN_TAG);
}

describe("a Markdown body", () => {
  it("renders headings, lists, links, code and emphasis as HTML", () => {
    const html = body(render(SOURCE).html);
    expect(html).toContain("<h1>Office move</h1>");
    expect(html).toContain("<h2>What to do</h2>");
    expect(html).toContain("<strong>Friday</strong>");
    expect(html).toContain("<em>the plan</em>");
    expect(html).toContain(`<a href="https://intranet.corp.example/move">https://intranet.corp.example/move</a>`); // linkify
    expect(html).toContain(`<a href="https://maps.corp.example/?a=1&amp;b=2">the map</a>`);
    expect(html).toMatch(/<ol>\s*<li>Pack your desk<\/li>\s*<li>Label boxes\s*<ul>\s*<li>with your name<\/li>/);
    expect(html).toContain("<code>pack --all</code>");
    expect(html).toContain(`<pre><code>pack --all --label "&lt;desk&gt;"\n</code></pre>`);
    expect(html).toContain(`<blockquote>\n<p>Questions? Write to <a href="mailto:hr@corp.example">hr@corp.example</a>.</p>\n</blockquote>`);
    expectOnlyMarkdownTags(html);
  });

  it("generates the plain-text part from the same source: links as text [url], headings underlined", () => {
    const { text } = render(SOURCE);
    expect(text).toContain("Office move\n===========\n");
    expect(text).toContain("What to do\n----------\n");
    expect(text).toContain("We move on Friday, see the plan at https://intranet.corp.example/move or the map [https://maps.corp.example/?a=1&b=2].");
    expect(text).toContain(" 1. Pack your desk\n 2. Label boxes\n    * with your name\n    * and your floor");
    expect(text).toContain(`pack --all --label "<desk>"`);
    expect(text).toContain("> Questions? Write to hr@corp.example.");
    expect(text).not.toMatch(/&amp;|&lt;|<strong>|\*\*/);
  });

  it("shows raw HTML in the source as text, never as markup", () => {
    const r = render(`Hi <script>alert(1)</script> <b onclick="x()">bold</b> <img src=x onerror=alert(1)>\n\n<div>block</div>\n\n<!-- comment -->`);
    const html = body(r.html);
    expect(html).not.toMatch(/<script|<img|<b[ >]|<div|<!--/i); // "onclick" is left only as escaped text
    expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html).toContain(`&lt;b onclick="x()"&gt;bold&lt;/b&gt;`);
    expect(html).toContain("&lt;div&gt;block&lt;/div&gt;");
    expectOnlyMarkdownTags(html);
    // The text part says what the reader of the HTML part sees.
    expect(r.text).toContain(`Hi <script>alert(1)</script> <b onclick="x()">bold</b>`);
  });

  it("drops links that are not http, https or mailto", () => {
    const r = render(
      [
        "[a](javascript:alert(1)) [b](JaVaScRiPt:alert(1)) [c](java&#115;cript:alert(1)) <javascript:alert(2)>",
        "[d](data:text/html;base64,PHNjcmlwdD4=) [e](vbscript:msgbox) [f](/relative) [g](//evil.example/)",
        "[h][ref] ![i](javascript:alert(3))",
        "",
        "[ref]: javascript:alert(4)",
      ].join("\n"),
    );
    const html = body(r.html);
    expect(html).not.toMatch(/href="(?!https?:|mailto:)/i);
    expect(html).not.toMatch(/href="[^"]*(?:javascript|vbscript|data):/i);
    expectOnlyMarkdownTags(html);
    expect(r.text).not.toMatch(/\[(?:javascript|vbscript|data):/i);
  });

  it("turns an image into a link to it (no remote image in the mail)", () => {
    const html = body(render("![the logo](https://img.corp.example/logo.png)").html);
    expect(html).toContain(`<a href="https://img.corp.example/logo.png">the logo</a>`);
    expect(html).not.toContain("<img");
  });

  it("leaves ~~tildes~~ as they are: plain text could not strike the words through", () => {
    const r = render("Do ~~not~~ delete the app.");
    expect(body(r.html)).toContain("Do ~~not~~ delete the app.");
    expect(r.text).toContain("Do ~~not~~ delete the app.");
  });

  it("ignores text and html when the body is Markdown", () => {
    const r = renderer.renderMessage({ subject: "s", text: "the plain text", html: "<p>the html</p>", markdown: "the *markdown*", from });
    expect(r.html).toContain("<em>markdown</em>");
    expect(r.html).not.toMatch(/the plain text|the html/);
    expect(r.text).not.toMatch(/the plain text|the html/);
  });
});

describe("house templates", () => {
  it("lists the templates of templates/messages/", () => {
    expect(renderer.templates()).toEqual(expect.arrayContaining(["announcement", "policy-notice"]));
    expect([...renderer.templates()]).toEqual([...renderer.templates()].sort());
  });

  it("uses announcement when no template is named", () => {
    expect(render("x").html).toBe(render("x", "announcement").html);
    expect(render("x").text).toBe(render("x", "announcement").text);
  });

  for (const template of ["announcement", "policy-notice"]) {
    it(`${template}: subject, body, sender and the company's defaults in both parts`, () => {
      const r = render("Hello **all**.", template);
      expect(r.subject).toBe("Office move");
      expect(r.html).toMatch(/^<!DOCTYPE html>/);
      expect(r.html).toContain("<title>Office move</title>");
      expect(r.html).toContain("<p>Hello <strong>all</strong>.</p>");
      expect(r.html).toContain("Internal Communications &lt;comms@corp.example&gt;");
      expect(r.text).toContain("Office move\n\nHello all.\n");
      expect(r.text).toContain("Sent by Internal Communications <comms@corp.example>");
      for (const part of [r.html, r.text]) {
        expect(part).toContain(DEFAULT_HOUSE_STYLE.companyName);
        expect(part).toContain(DEFAULT_HOUSE_STYLE.footer);
      }
      expect(r.html).not.toContain("<img"); // no logo configured: the name alone
      expect(r.text.endsWith("\n")).toBe(true);
      expect(r.text).not.toMatch(/\n{3}/);
    });

    it(`${template}: the configured company name, logo and footer, escaped in HTML`, () => {
      const r = render("Hello.", template, acme);
      expect(r.html).toContain(`<img src="https://cdn.acme.example/logo.png?v&#x3D;1&amp;s&#x3D;2" alt="Acme &amp; Sons"`);
      expect(r.html).toContain("Acme internal: do not forward.");
      expect(r.html).not.toContain(DEFAULT_HOUSE_STYLE.footer);
      expect(r.text).toContain("Acme & Sons");
      expect(r.text).toContain("Acme internal: do not forward.");
    });
  }

  it("policy-notice says it is a policy notice, announcement does not", () => {
    expect(render("x", "policy-notice").html).toContain("Policy notice");
    expect(render("x", "policy-notice").text).toContain("POLICY NOTICE");
    expect(render("x", "announcement").html).not.toContain("Policy notice");
  });

  it("refuses a template that does not exist", () => {
    expect(() => render("x", "no-such-template")).toThrow(/no-such-template/);
  });

  it("keeps the plain bodies (text, html) in templates/message.*.hbs", () => {
    const r = renderer.renderMessage({ subject: "s", text: "plain", from });
    expect(r.html).not.toContain("airlock-body");
    expect(r.html).not.toContain(DEFAULT_HOUSE_STYLE.footer);
  });
});

describe("determinism", () => {
  it("renders the same source to the same bytes, and builds the same digest", async () => {
    const a = render(SOURCE, "policy-notice");
    const b = createRenderer(templatesDir()).renderMessage({ subject: "Office move", text: "", markdown: SOURCE, template: "policy-notice", from });
    expect(b).toEqual(a);
    const m = { subject: "Office move", text: "", html: null, markdown: SOURCE, template: "policy-notice", from, toHeader: '"All staff" <all-staff@corp.example>', messageId: "<airlock.7.0011223344556677@corp.example>" };
    const one = await composeOriginal(renderer, m, new Date("2026-12-01T10:00:00Z"));
    const two = await composeOriginal(renderer, m, new Date("2026-12-02T11:00:00Z"));
    expect(two.digest).toBe(one.digest);
    // Read back by a real mail parser: both parts exactly as rendered.
    const parsed = await simpleParser(one.raw);
    expect(String(parsed.html).replace(/\r\n/g, "\n")).toBe(one.parts.html);
    expect((parsed.text ?? "").replace(/\r\n/g, "\n")).toBe(one.parts.text);
  });
});
