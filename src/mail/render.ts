/**
 * Renders the policy message and the correction notice from the handlebars templates in
 * `templates/`. Templates are compiled once per renderer, in strict mode, so a typo in a
 * template throws instead of silently rendering nothing; for that reason every optional input is
 * passed explicitly as null.
 *
 * Escaping: HTML templates escape every `{{value}}`; plain-text templates and the subject are
 * compiled with `noEscape` (text/plain and header values must not carry `&amp;`). The only HTML
 * not produced by escaping comes from the `paragraphs` helper (which escapes first) and the
 * `sanitizeHtml` helper (allow-list re-serialization of the author's HTML).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Handlebars from "handlebars";
import { sanitizeHtml } from "./sanitize-html.js";

export interface MessageInput {
  subject: string;
  /** Plain-text body: the text/plain part, and the HTML body unless `html` is given. */
  text: string;
  /** Author HTML, untrusted: sanitized before it is placed in the layout. */
  html?: string | null;
  /** Sender as displayed, e.g. `Internal Communications <comms@corp.example>`. */
  from: string;
  /** A Markdown body: rendered into `template` as the HTML part and into the plain-text part (then `text`/`html` are ignored). */
  markdown?: string;
  /** House template of templates/messages/ for a Markdown body. */
  template?: string;
}

export interface CorrectionInput {
  originalSubject: string;
  /** When the original went out; null words the notice without a date. */
  sentAt: Date | null;
  /** Replacement text given at recall, if any. */
  correctionText?: string | null;
  from: string;
}

export interface Rendered {
  subject: string;
  html: string;
  text: string;
}

export interface Renderer {
  renderMessage(input: MessageInput): Rendered;
  renderCorrection(input: CorrectionInput): Rendered;
}

/**
 * `<repo>/templates/`, resolved from this module's location: src/mail/render.ts under tsx and
 * vitest, <dist>/src/mail/render.js once compiled (`npm run build`; templates/ sits next to dist/).
 */
export function templatesDir(): string {
  const up = import.meta.url.endsWith(".js") ? "../../../templates/" : "../../templates/";
  return fileURLToPath(new URL(up, import.meta.url));
}

export function createRenderer(dir: string): Renderer {
  // A private instance: helpers registered here cannot leak into, or be replaced by, other code.
  const hb = Handlebars.create();
  registerMailHelpers(hb);

  const compile = (file: string, plain: boolean) =>
    hb.compile(readFileSync(join(dir, file), "utf8"), { strict: true, noEscape: plain });
  const messageHtml = compile("message.html.hbs", false);
  const messageText = compile("message.txt.hbs", true);
  const correctionHtml = compile("correction.html.hbs", false);
  const correctionText = compile("correction.txt.hbs", true);
  const correctionSubject = compile("correction-subject.hbs", true);

  return {
    renderMessage(input) {
      const data = { subject: input.subject, text: input.text, html: nonEmpty(input.html), from: input.from };
      return { subject: input.subject, html: messageHtml(data), text: tidyText(messageText(data)) };
    },
    renderCorrection(input) {
      const data = {
        originalSubject: input.originalSubject,
        sentAt: input.sentAt ? formatDate(input.sentAt) : null,
        correctionText: nonEmpty(input.correctionText),
        from: input.from,
      };
      return {
        // The file ends with a newline; a subject is one line.
        subject: correctionSubject(data).trim(),
        html: correctionHtml(data),
        text: tidyText(correctionText(data)),
      };
    },
  };
}

/** A private Handlebars instance, as `Handlebars.create()` returns it. */
export type HandlebarsEnv = ReturnType<typeof Handlebars.create>;

/**
 * Registers the two body helpers on a private instance: `paragraphs` (escapes, then wraps) and
 * `sanitizeHtml`. `inlineStyles: false` drops the `style` attribute from `paragraphs`, for
 * pages served under a CSP that forbids inline styles (emails need it: clients drop `<style>`).
 */
export function registerMailHelpers(hb: HandlebarsEnv, opts: { inlineStyles?: boolean } = {}): void {
  const open = opts.inlineStyles === false ? "<p>" : `<p style="margin:0 0 1em;">`;
  hb.registerHelper("paragraphs", (text: unknown) => new hb.SafeString(paragraphs(String(text ?? ""), open)));
  hb.registerHelper("sanitizeHtml", (html: unknown) => new hb.SafeString(sanitizeHtml(String(html ?? ""))));
}

/** Blank-line separated paragraphs, single newlines as `<br>`; the text is escaped first. */
function paragraphs(text: string, open: string): string {
  return text
    .replace(/\r\n?/g, "\n")
    .split(/\n[ \t]*\n/)
    .map((p) => p.trim())
    .filter((p) => p.length > 0)
    .map((p) => `${open}${Handlebars.escapeExpression(p).replace(/\n/g, "<br>\n")}</p>`)
    .join("\n");
}

function nonEmpty(s: string | null | undefined): string | null {
  return s && s.trim() ? s : null;
}

/** Collapses the blank-line runs that `{{#if}}` blocks leave behind. */
export function tidyText(s: string): string {
  return s.replace(/\n{3,}/g, "\n\n").trim() + "\n";
}

const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

/** `21 July 2020, 14:05 UTC`: explicit UTC, so the notice means the same in every office. */
function formatDate(d: Date): string {
  const hh = String(d.getUTCHours()).padStart(2, "0");
  const mm = String(d.getUTCMinutes()).padStart(2, "0");
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}, ${hh}:${mm} UTC`;
}
