import { describe, expect, it } from "vitest";
import { createRenderer, templatesDir } from "../../src/mail/render.js";
import { sanitizeHtml } from "../../src/mail/sanitize-html.js";

const renderer = createRenderer(templatesDir());
const XSS = `<script>alert("x")</script>`;
const from = "Internal Communications <comms@corp.example>";

/** Every tag in sanitized output must be one the sanitizer writes itself (sanitize-html writes `<br />`). */
const WRITTEN_TAG = /^<(?:\/?(?:p|b|strong|i|em|u|ul|ol|li|a|h[1-4]|blockquote|table|tr|td|th|thead|tbody|span|div)|br \/|a href="(?:https?:\/\/|mailto:)[^"<>]*")>$/;
function expectOnlyWrittenTags(html: string) {
  for (const tag of html.match(/<[^>]*>?/g) ?? []) expect(tag).toMatch(WRITTEN_TAG);
}

describe("renderMessage", () => {
  it("escapes subject, text and sender in the HTML and keeps them verbatim in the text part", () => {
    const r = renderer.renderMessage({ subject: `Delete ${XSS} now`, text: `Hello ${XSS}\n& bye`, from: `Mallory <img src=x onerror=alert(1)> <m@corp.example>` });
    expect(r.html).not.toMatch(/<script|<img/i);
    expect(r.html).toContain("Delete &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; now");
    expect(r.html).toContain("Hello &lt;script&gt;");
    expect(r.html).toContain("&amp; bye");
    expect(r.subject).toBe(`Delete ${XSS} now`);
    expect(r.text).toContain(`Hello ${XSS}\n& bye`);
    expect(r.text).not.toContain("&lt;");
  });

  it("renders plain text as paragraphs with line breaks", () => {
    const r = renderer.renderMessage({ subject: "s", text: "line one\nline two\n\nsecond paragraph", from });
    expect(r.html).toMatch(/<p[^>]*>line one<br>\nline two<\/p>\n<p[^>]*>second paragraph<\/p>/);
  });

  it("uses the author's HTML, sanitized, instead of the text when given", () => {
    const r = renderer.renderMessage({ subject: "s", text: "plain fallback", html: `<p onclick="x()">Hi <b>all</b></p>${XSS}`, from });
    expect(r.html).toContain("<p>Hi <b>all</b></p>");
    expect(r.html).not.toMatch(/<script|onclick|alert/i);
    expect(r.html).not.toContain("plain fallback");
    expect(r.text).toContain("plain fallback");
  });

  it("treats an empty html like no html", () => {
    const r = renderer.renderMessage({ subject: "s", text: "the text", html: "  ", from });
    expect(r.html).toContain("the text");
  });
});

describe("renderCorrection", () => {
  const base = { originalSubject: "Delete TikTok from your phone", sentAt: new Date("2020-07-10T14:05:00Z"), from };

  it("has the correction subject and says the earlier message was sent in error", () => {
    const r = renderer.renderCorrection(base);
    expect(r.subject).toBe("Correction: Delete TikTok from your phone");
    for (const part of [r.html, r.text]) {
      expect(part).toMatch(/sent in error/);
      expect(part).toMatch(/disregard/);
      expect(part).toContain("10 July 2020, 14:05 UTC");
      expect(part).not.toContain("Corrected information");
    }
  });

  it("escapes the replacement text and the original subject", () => {
    const r = renderer.renderCorrection({ ...base, originalSubject: `Hi ${XSS}`, correctionText: `Keep the app.\n${XSS}` });
    expect(r.html).not.toMatch(/<script/i);
    expect(r.html).toContain("Corrected information");
    expect(r.html).toContain("Keep the app.<br>\n&lt;script&gt;");
    expect(r.subject).toBe(`Correction: Hi ${XSS}`);
    expect(r.text).toContain(`Keep the app.\n${XSS}`);
  });

  it("words the notice without a date when the send time is unknown", () => {
    const r = renderer.renderCorrection({ ...base, sentAt: null });
    expect(r.text).toContain(`Our earlier message "Delete TikTok from your phone" was sent in error.`);
  });
});

describe("sanitizeHtml", () => {
  const vectors: Array<[string, string]> = [
    ["onerror", `<img src=x onerror="alert(1)">`],
    ["event handler on an allowed tag", `<div onmouseover="alert(1)">hover</div>`],
    ["javascript: href", `<a href="javascript:alert(1)">x</a>`],
    ["mixed-case javascript: href", `<a href=" JaVaScRiPt:alert(1)">x</a>`],
    ["entity-encoded scheme", `<a href="&#106;avascript:alert(1)">x</a>`],
    ["data: href", `<a href="data:text/html,<script>alert(1)</script>">x</a>`],
    ["uppercase script", `<SCRIPT>alert(1)</SCRIPT>`],
    ["uppercase img", `<IMG SRC="javascript:alert(1)">`],
    ["unclosed script", `<script>alert(1)`],
    ["unclosed tag", `<img src=x onerror=alert(1)`],
    ["split script", `<scr<script>ipt>alert(1)</script>`],
    ["nested split script", `<scr<script>x</script>ipt>alert(1)</scr<script>x</script>ipt>`],
    ["script with attributes", `<script src="//evil.example/x.js"></script>`],
    ["svg onload", `<svg onload=alert(1)><circle/></svg>`],
    ["iframe", `<iframe src="https://evil.example"></iframe>`],
    ["style block", `<style>body{background:url(javascript:alert(1))}</style>`],
    ["style attribute", `<p style="background:url(javascript:alert(1))">x</p>`],
    ["quote breaking href", `<a href="https://ok.example/" onclick="alert(1)">x</a>`],
    ["quoted > in attribute", `<a title="x>y" href="javascript:alert(1)">x</a>`],
    ["noscript mutation", `<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>`],
    ["comment", `<!--<img src=x onerror=alert(1)>-->`],
    ["conditional comment", `<!--[if IE]><script>alert(1)</script><![endif]-->`],
    ["object/embed", `<object data="x.swf"><embed src="x.swf"></object><embed src="y.swf">`],
    ["null byte", `<scr\u0000ipt>alert(1)</script>`],
    ["attribute without quotes", `<a href=javascript:alert(1)>x</a>`],
  ];
  for (const [name, input] of vectors) {
    it(`neutralises ${name}`, () => {
      const out = sanitizeHtml(input);
      // Leftover text such as "alert(1)" or an escaped "&lt;img onerror=" is harmless; markup is not.
      expectOnlyWrittenTags(out);
      expect(out).not.toMatch(/<(?:script|img|svg|iframe|embed|object|style)/i);
    });
  }

  it("keeps allowed tags without attributes, and safe links", () => {
    expect(sanitizeHtml(`<P CLASS="x">Hi <STRONG>there</STRONG><br/>next</P>`)).toBe("<p>Hi <strong>there</strong><br />next</p>");
    expect(sanitizeHtml(`<a href="https://corp.example/a?x=1&amp;y=2" target="_blank">a</a>`)).toBe(`<a href="https://corp.example/a?x=1&amp;y=2">a</a>`);
    expect(sanitizeHtml(`<a href='mailto:hr@corp.example'>hr</a>`)).toBe(`<a href="mailto:hr@corp.example">hr</a>`);
    expect(sanitizeHtml(`<a href="https://x.example/&quot;onclick=&quot;">a</a>`)).toBe(`<a href="https://x.example/&quot;onclick=&quot;">a</a>`);
    // Only absolute links with an allowed scheme keep their href: not relative, not protocol-relative.
    expect(sanitizeHtml(`<a href="/intranet">a</a><a href="//evil.example/">b</a><a href="ftp://x.example/">c</a>`)).toBe("<a>a</a><a>b</a><a>c</a>");
  });

  it("drops the content of script-like elements but keeps the text of other dropped tags", () => {
    expect(sanitizeHtml(`a<script>var x = 1;</script>b<font color=red>c</font><embed src=x>d`)).toBe("abcd");
    expect(sanitizeHtml(`<html><head><title>T</title><style>p{}</style></head><body><p>x</p></body></html>`)).toBe("<p>x</p>");
  });

  // sanitize-html decodes character references and writes the characters (escaping only &, <, >):
  // `&nbsp;` arrives as U+00A0, `&#169;` as ©. A reference still only ever becomes text, never markup.
  it("escapes stray angle brackets and bare ampersands; character references stay text", () => {
    expect(sanitizeHtml(`1 < 2 > 0 & a<3 &amp; &nbsp; &#169; &#x41;`)).toBe("1 &lt; 2 &gt; 0 &amp; a&lt;3 &amp; \u00a0 © A");
    expect(sanitizeHtml(`&lt;script&gt;alert(1)&lt;/script&gt; &#60;img src=x onerror=alert(1)&#62;`)).toBe("&lt;script&gt;alert(1)&lt;/script&gt; &lt;img src=x onerror=alert(1)&gt;");
    // A reference to a character no mail body may carry raw stays a reference.
    expect(sanitizeHtml(`a&#1;b&#xFFFE;c`)).toBe("a&#x1;b&#xFFFE;c");
    // `<b …` unterminated at the end of the input is an unfinished tag (browsers drop it too), not text.
    const out = sanitizeHtml(`x a<b &amp; &nbsp;`);
    expect(out).toBe("x a");
  });

  it("balances tags so the author's HTML cannot close the layout around it", () => {
    expect(sanitizeHtml(`</td></tr></table><div><p>open`)).toBe("<div><p>open</p></div>");
    // An <li> closes the open one, as in browsers (the hand-written sanitizer nested them instead).
    expect(sanitizeHtml(`<ul><li>a<li>b</ul>`)).toBe("<ul><li>a</li><li>b</li></ul>");
  });

  it("stays fast on adversarial input", () => {
    const evil = "<a ".repeat(50_000) + "<script".repeat(50_000) + "<div>".repeat(50_000) + "</p>".repeat(50_000);
    const t = Date.now();
    const out = sanitizeHtml(evil);
    expect(Date.now() - t).toBeLessThan(2000);
    expectOnlyWrittenTags(out);
  });
});
