/**
 * A deliberately small allow-list sanitizer for author-provided HTML (we ship no sanitizer
 * dependency). Safety does not rest on parsing HTML the way a browser does: the output is
 * re-serialized from scratch, so the only `<` in it belong to tags written here (allow-listed
 * names, no attributes except a checked `href` on `a`), and every other character of the input
 * ends up as escaped text. Whatever the input tricks the tokenizer into, the worst result is
 * visible garbage, never markup.
 */

/** Tags kept (without attributes). Anything else is dropped; its text content stays, escaped. */
const ALLOWED = new Set([
  "p", "br", "b", "strong", "i", "em", "u", "ul", "ol", "li", "a", "h1", "h2", "h3", "h4",
  "blockquote", "table", "tr", "td", "th", "thead", "tbody", "span", "div",
]);

/**
 * Elements whose whole content is removed, not just the tags: their text is code, styles or
 * fallback that must not show up as body text. The spec'd five plus a few with the same nature
 * (a pasted full document brings `<head>`/`<title>`).
 */
const DROP_WITH_CONTENT = [
  "script", "style", "iframe", "object", "embed",
  "noscript", "template", "head", "title", "textarea", "select", "svg", "math", "xmp", "noembed", "noframes",
];
/** Of those, the ones that are void in HTML: an unclosed one must not swallow the rest of the input. */
const VOID_DROPPED = new Set(["embed"]);

// `\b` after the name: `<script/x>` is a script tag for browsers, `<scripts>` is not.
const DROPPED_OPEN = new RegExp(`<(${DROP_WITH_CONTENT.join("|")})\\b`, "iy");
const DROPPED_CLOSE = new Map(DROP_WITH_CONTENT.map((n) => [n, new RegExp(`</${n}(?=[\\s/>]|$)`, "gi")]));

/**
 * A tag: name followed by whitespace, `/` or `>`, then attributes up to `>`. Outside quotes `<`
 * is not allowed, which keeps a failed match from scanning past the next `<` (linear time) and
 * makes `<scr<script>` two candidate tags instead of one.
 */
const TAG = /<(\/?)([a-zA-Z][a-zA-Z0-9]*)(?=[\s/>])((?:[^<>"']|"[^"]*"|'[^']*')*)>/y;
const ATTR = /([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
/** Deeper nesting is dropped: keeps the open-tag stack (scanned on every closing tag) small. */
const MAX_DEPTH = 64;
const SAFE_HREF = /^(?:https:\/\/|http:\/\/|mailto:)/i;
const ENTITY = /^&(?:[a-zA-Z][a-zA-Z0-9]{1,31}|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});/;

export function sanitizeHtml(input: string): string {
  const src = input.replace(/\u0000/g, "");
  const open: string[] = [];
  let out = "";
  let i = 0;
  while (i < src.length) {
    const lt = src.indexOf("<", i);
    if (lt < 0) {
      out += escapeHtml(src.slice(i));
      break;
    }
    out += escapeHtml(src.slice(i, lt));
    if (src.startsWith("<!--", lt)) {
      // Comments (and Outlook conditional comments) go entirely; an unclosed one runs to the end.
      const end = src.indexOf("-->", lt + 4);
      i = end < 0 ? src.length : end + 3;
      continue;
    }
    if (src[lt + 1] === "!" || src[lt + 1] === "?") {
      // <!DOCTYPE>, <![CDATA[, <?xml ?>: markup declarations have no place in a body.
      const end = src.indexOf(">", lt);
      i = end < 0 ? src.length : end + 1;
      continue;
    }
    DROPPED_OPEN.lastIndex = lt;
    const dropped = DROPPED_OPEN.exec(src);
    if (dropped) {
      i = skipDroppedBlock(src, (dropped[1] ?? "").toLowerCase(), DROPPED_OPEN.lastIndex);
      continue;
    }
    TAG.lastIndex = lt;
    const m = TAG.exec(src);
    if (!m) {
      // Not a tag we can delimit: the `<` is text.
      out += "&lt;";
      i = lt + 1;
      continue;
    }
    i = TAG.lastIndex;
    out += serializeTag(m[1] === "/", (m[2] ?? "").toLowerCase(), m[3] ?? "", open);
  }
  // Close what the author left open so our layout around the body stays intact.
  while (open.length) out += `</${open.pop()}>`;
  return out;
}

function serializeTag(closing: boolean, name: string, attrs: string, open: string[]): string {
  if (!ALLOWED.has(name)) return "";
  if (name === "br") return closing ? "" : "<br>";
  if (closing) {
    // A stray closing tag could close our layout's elements: keep only ones that match an open tag.
    const at = open.lastIndexOf(name);
    if (at < 0) return "";
    let s = "";
    while (open.length > at) s += `</${open.pop()}>`;
    return s;
  }
  if (open.length >= MAX_DEPTH) return "";
  open.push(name);
  if (name === "a") {
    const href = safeHref(attrs);
    return href === null ? "<a>" : `<a href="${escapeHtml(href)}">`;
  }
  return `<${name}>`;
}

/** The first `href` (browsers ignore later duplicates), if it starts with an allowed scheme. */
function safeHref(attrs: string): string | null {
  for (const m of attrs.matchAll(ATTR)) {
    if ((m[1] ?? "").toLowerCase() !== "href") continue;
    const value = (m[2] ?? m[3] ?? m[4] ?? "").trim();
    return SAFE_HREF.test(value) ? value : null;
  }
  return null;
}

/**
 * Index just past the block opened at `from` (right after `<name`): past its closing tag, or the
 * end of the input when it is never closed (browsers read the rest as script/style too). A void
 * one (`<embed>`) only loses its own tag. Each call scans forward only, so the pass stays linear.
 */
function skipDroppedBlock(src: string, name: string, from: number): number {
  const close = DROPPED_CLOSE.get(name);
  if (close && !VOID_DROPPED.has(name)) {
    close.lastIndex = from;
    const m = close.exec(src);
    if (!m) return src.length;
    from = m.index + m[0].length;
  }
  const gt = src.indexOf(">", from);
  return gt < 0 ? src.length : gt + 1;
}

/**
 * Escapes text and attribute values. An `&` that already starts a character reference is kept,
 * so `&amp;` or `&nbsp;` in the author's HTML are not double-escaped; a reference only ever
 * decodes to text, never to markup.
 */
function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c, offset: number) => {
    if (c === "&") return ENTITY.test(s.slice(offset, offset + 40)) ? "&" : "&amp;";
    return c === "<" ? "&lt;" : c === ">" ? "&gt;" : c === '"' ? "&quot;" : "&#39;";
  });
}
