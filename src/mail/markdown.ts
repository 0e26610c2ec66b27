/**
 * A Markdown body, rendered once into both parts of the mail: the HTML body (markdown-it, raw HTML
 * not allowed, then sanitized all the same) and the plain text generated from that very HTML
 * (html-to-text), so the two parts cannot say different things. Both are pure functions of the
 * source: the same Markdown gives the same bytes at submit, approval and release (the digest).
 *
 * Choices, each for a mail read by a whole company:
 * - `html: false`: `<b>` in the source is shown as text, never rendered.
 * - `linkify`: bare `https://…` and e-mail addresses become links; `typographer` off (the text is
 *   sent as typed).
 * - Strikethrough (`~~x~~`) is off: the plain-text part cannot strike words through, and struck
 *   words read as normal ones would say the opposite. The tildes stay, in both parts.
 * - Images (`![alt](url)`) become links to the image: a remote image in a company-wide mail is a
 *   tracking pixel to every reader's client, and most clients block it anyway.
 * - Plain text: links as `text [url]` (once when the text is the address), headings 1 and 2
 *   underlined, every word as written (no upper-casing), no hard wrapping (clients reflow, as for a
 *   plain-text body), tables as columns.
 */
import MarkdownIt from "markdown-it";
import { convert, type FormatCallback, type HtmlToTextOptions } from "html-to-text";
import { sanitizeMarkdownHtml } from "./sanitize-html.js";

const md = new MarkdownIt("default", { html: false, linkify: true, typographer: false, breaks: false });
md.disable(["strikethrough"]);
md.renderer.rules.image = (tokens, idx, options, env, self) => {
  const token = tokens[idx]!;
  const src = String(token.attrGet("src") ?? "");
  const alt = self.renderInlineAsText(token.children ?? [], options, env);
  return `<a href="${md.utils.escapeHtml(src)}">${md.utils.escapeHtml(alt || src)}</a>`;
};

/** The HTML body of a Markdown source: markdown-it's output through the Markdown allow-list. */
export function markdownToHtml(source: string): string {
  return sanitizeMarkdownHtml(md.render(source));
}

/** `Heading` over a line of `=` (h1) or `-` (h2), as plain-text mail has long written them. */
function underlined(char: string): FormatCallback {
  return (elem, walk, builder, formatOptions) => {
    builder.openBlock({ leadingLineBreaks: formatOptions.leadingLineBreaks ?? 2 });
    walk(elem.children, builder);
    builder.closeBlock({
      trailingLineBreaks: formatOptions.trailingLineBreaks ?? 2,
      blockTransform: (str) => `${str}\n${char.repeat(Math.max(3, ...str.split("\n").map((l) => [...l].length)))}`,
    });
  };
}

const heading = { uppercase: false };
const TEXT: HtmlToTextOptions = {
  wordwrap: false,
  formatters: { h1: underlined("="), h2: underlined("-") },
  selectors: [
    { selector: "a", options: { hideLinkHrefIfSameAsText: true, linkBrackets: ["[", "]"] } },
    { selector: "h1", format: "h1" },
    { selector: "h2", format: "h2" },
    { selector: "h3", options: heading },
    { selector: "h4", options: heading },
    { selector: "h5", options: heading },
    { selector: "h6", options: heading },
    { selector: "table", format: "dataTable", options: { uppercaseHeaderCells: false } },
    { selector: "hr", options: { length: 20 } },
  ],
};

/** The plain-text part of a rendered (sanitized) Markdown body. */
export function htmlToPlainText(html: string): string {
  return convert(html, TEXT);
}
