import { describe, expect, it } from "vitest";
import { stagedFooter } from "../../src/mail/staged-footer.js";

const url = "https://airlock.corp.example/report/42.AbCdEfGhIjKlMnOpQrStUv";

describe("the report-a-problem footer of early waves", () => {
  it("appends a signature-separated line to the text part", () => {
    const out = stagedFooter({ text: "Hello all,\n\nThe calendar changed.\n", html: null }, url);
    expect(out.text).toBe(`Hello all,\n\nThe calendar changed.\n\n-- \nSomething wrong with this message? Report it: ${url}\n`);
    expect(out.html).toBeNull();
  });

  it("does not pile blank lines on a text that ends with several, nor start an empty one with them", () => {
    expect(stagedFooter({ text: "Hi\r\n\r\n\r\n", html: null }, url).text).toBe(`Hi\n\n-- \nSomething wrong with this message? Report it: ${url}\n`);
    expect(stagedFooter({ text: "", html: null }, url).text).toBe(`-- \nSomething wrong with this message? Report it: ${url}\n`);
  });

  it("puts a paragraph with the link just before </body>, whatever its case", () => {
    const html = "<!DOCTYPE html><html><body><p>Hello all,</p></BODY></html>";
    const out = stagedFooter({ text: "Hello all,", html }, url).html!;
    expect(out).toMatch(new RegExp(`^<!DOCTYPE html><html><body><p>Hello all,</p><p style="[^"<>]*">Something wrong with this message\\? Report it: <a href="${url}">${url}</a></p>\\n</BODY></html>$`));
  });

  it("uses the last </body> (one quoted in a comment or text before it does not count)", () => {
    const html = "<html><body><p>write &lt;/body&gt;</p><!-- </body> --><p>end</p></body></html>";
    const out = stagedFooter({ text: "", html }, url).html!;
    expect(out.indexOf("Report it")).toBeGreaterThan(out.indexOf("<p>end</p>"));
    expect(out.endsWith("</p>\n</body></html>")).toBe(true);
  });

  it("without </body>, goes before </html>, else at the end", () => {
    expect(stagedFooter({ text: "", html: "<html><p>Hi</p></html>" }, url).html).toMatch(/^<html><p>Hi<\/p><p [^>]*>Something wrong.*<\/a><\/p>\n<\/html>$/);
    expect(stagedFooter({ text: "", html: "<p>Hi</p>" }, url).html).toMatch(/^<p>Hi<\/p>\n<p [^>]*>Something wrong.*<\/a><\/p>\n$/);
  });

  it("escapes the URL in the href and in the text", () => {
    const odd = `https://airlock.corp.example/report/42.x?a=1&b="2"<i>'`;
    const html = stagedFooter({ text: "", html: "<body></body>" }, odd).html!;
    const escaped = "https://airlock.corp.example/report/42.x?a=1&amp;b=&quot;2&quot;&lt;i&gt;&#39;";
    expect(html).toContain(`<a href="${escaped}">${escaped}</a>`);
    expect(html).not.toContain("<i>");
    expect(html).not.toContain('"2"');
  });

  it("refuses a URL that is not one clean http(s) token (a line break would forge the text part)", () => {
    for (const bad of ["javascript:alert(1)", "https://a.example/x\nBcc: y", "https://a.example/x y", ""]) {
      expect(() => stagedFooter({ text: "", html: null }, bad), bad).toThrow(RangeError);
    }
  });

  it("appends again when applied again (idempotence is not its job)", () => {
    const once = stagedFooter({ text: "Hi", html: "<body></body>" }, url);
    const twice = stagedFooter(once, url);
    expect(twice.text.split("Report it:").length).toBe(3);
    expect(twice.html!.split("Report it:").length).toBe(3);
  });
});
