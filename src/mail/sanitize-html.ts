/**
 * Allow-list sanitizing of untrusted HTML, with the `sanitize-html` library (pinned to 2.16.x: 2.17+
 * needs Node 22). Its output is re-serialized from htmlparser2's parse, so the only markup in it is
 * the allow-listed tags below, balanced, with no attribute but a checked `href` on `a`; every other
 * character of the input ends up as escaped text. Two lists:
 *
 * - `sanitizeHtml`: the author's HTML (API clients), exactly the tags Airlock has always kept.
 * - `sanitizeMarkdownHtml`: what markdown-it rendered from a Markdown body (which allows no raw
 *   HTML): defence in depth. The same list plus the few structural tags Markdown itself writes
 *   (code, rules, small headings), still without any attribute but `href`.
 */
import sanitize from "sanitize-html";

/** Tags kept from the author's HTML, without attributes (but `href` on `a`). Anything else is dropped; its text stays, escaped. */
const AUTHOR_TAGS = [
  "p", "br", "b", "strong", "i", "em", "u", "ul", "ol", "li", "a", "h1", "h2", "h3", "h4",
  "blockquote", "table", "tr", "td", "th", "thead", "tbody", "span", "div",
];

/** What markdown-it writes besides those: code spans and blocks, horizontal rules, headings 5 and 6. */
const MARKDOWN_TAGS = [...AUTHOR_TAGS, "pre", "code", "hr", "h5", "h6"];

/**
 * Elements whose whole content is removed, not just the tags: their text is code, styles or
 * fallback that must not show up as body text (a pasted full document brings `<head>`/`<title>`).
 */
const DROP_WITH_CONTENT = [
  "script", "style", "iframe", "object", "embed",
  "noscript", "template", "head", "title", "textarea", "select", "option", "svg", "math", "xmp", "noembed", "noframes",
];

/** A link keeps its `href` only with one of these schemes (no relative, protocol-relative, javascript:, data: …). */
const SAFE_HREF = /^(?:https:\/\/|http:\/\/|mailto:)/i;

/** Deeper nesting is dropped (its text kept): keeps the parser's stack and the mail small. */
const MAX_DEPTH = 64;

function options(tags: string[]): sanitize.IOptions {
  return {
    allowedTags: tags,
    allowedAttributes: { a: ["href"] },
    allowedSchemes: ["http", "https", "mailto"],
    allowedSchemesByTag: {},
    allowedSchemesAppliedToAttributes: ["href"],
    allowProtocolRelative: false,
    allowedClasses: {},
    allowedStyles: {},
    disallowedTagsMode: "discard",
    nonTextTags: DROP_WITH_CONTENT,
    nestingLimit: MAX_DEPTH,
    // sanitize-html keeps relative URLs (it checks only schemes it sees): keep the href only when it
    // is absolute with an allowed scheme. The value here is already entity-decoded by the parser.
    transformTags: {
      a: (tagName, attribs) => {
        const href = (attribs.href ?? "").trim();
        const kept: sanitize.Attributes = SAFE_HREF.test(href) ? { href } : {};
        return { tagName, attribs: kept };
      },
    },
  };
}

const AUTHOR = options(AUTHOR_TAGS);
const MARKDOWN = options(MARKDOWN_TAGS);

/** The author's HTML, reduced to the allow-list. */
export function sanitizeHtml(input: string): string {
  return run(input, AUTHOR);
}

/** HTML that markdown-it rendered, reduced to the Markdown allow-list (defence in depth). */
export function sanitizeMarkdownHtml(input: string): string {
  return run(input, MARKDOWN);
}

function run(input: string, opts: sanitize.IOptions): string {
  // NUL is no character a mail body may carry; the parser would turn it into U+FFFD.
  const src = input.replace(/\u0000/g, "");
  if (tooCostly(src)) return escapeAll(src);
  return sanitize(src, opts).replace(UNMAILABLE, reference);
}

/**
 * Character references decode to characters a mail body must not carry raw (`&#1;`, `&#xFFFE;`):
 * they are written back as references, text as before, so the part passes the same rules as
 * typed text (domain/text-rules.ts).
 */
const UNMAILABLE = /[\u0001-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\ufdd0-\ufdef\ufffe\uffff]/g;
const reference = (c: string) => `&#x${c.codePointAt(0)!.toString(16).toUpperCase()};`;

/**
 * htmlparser2 (inside sanitize-html) looks for every closing tag in its whole stack of open
 * elements, so thousands of unclosed elements followed by thousands of closing tags that match
 * none of them cost seconds (quadratic). Real mail is a few dozen elements deep. This estimates
 * that search cost in one linear pass (a stack of open names, a closing tag pops down to its name
 * when open, else counts the whole stack) and refuses to parse past a budget: such input is shown
 * as text, escaped (visible garbage, never markup). A performance guard only, not a security one.
 */
const SEARCH_BUDGET = 10_000_000;
const TAG_NAME = /<(\/?)([a-zA-Z][a-zA-Z0-9]*)/g;
const VOID = new Set(["area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"]);

function tooCostly(html: string): boolean {
  const stack: string[] = [];
  const open = new Map<string, number[]>(); // name -> its positions in `stack`
  let cost = 0;
  for (const m of html.matchAll(TAG_NAME)) {
    const name = (m[2] ?? "").toLowerCase();
    if (VOID.has(name)) continue;
    if (!m[1]) {
      const at = open.get(name) ?? [];
      at.push(stack.length);
      open.set(name, at);
      stack.push(name);
      continue;
    }
    const at = open.get(name);
    if (!at?.length) {
      cost += stack.length;
      if (cost > SEARCH_BUDGET) return true;
      continue;
    }
    const to = at[at.length - 1]!;
    while (stack.length > to) open.get(stack.pop()!)!.pop();
  }
  return false;
}

function escapeAll(s: string): string {
  return s.replace(/[&<>"]/g, (c) => (c === "&" ? "&amp;" : c === "<" ? "&lt;" : c === ">" ? "&gt;" : "&quot;")).replace(UNMAILABLE, reference);
}
