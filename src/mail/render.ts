/**
 * Renders the policy message and the correction notice from the handlebars templates in
 * `templates/`. Templates are compiled once per renderer, in strict mode, so a typo in a
 * template throws instead of silently rendering nothing; for that reason every optional input is
 * passed explicitly as null.
 *
 * A Markdown body goes into a house template of `templates/messages/` instead (`<name>.html.hbs`
 * and `<name>.txt.hbs`, with the company's name, logo and footer): its HTML from markdown-it, its
 * plain text generated from that HTML (mail/markdown.ts).
 *
 * Escaping: HTML templates escape every `{{value}}`; plain-text templates and the subject are
 * compiled with `noEscape` (text/plain and header values must not carry `&amp;`). The only HTML
 * not produced by escaping comes from the `paragraphs` helper (which escapes first), the
 * `sanitizeHtml` helper (allow-list re-serialization of the author's HTML) and a house template's
 * `body` (markdown-it without raw HTML, then the same kind of allow-list).
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import Handlebars from "handlebars";
import { htmlToPlainText, markdownToHtml } from "./markdown.js";
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
  /**
   * When a purge ran (SPEC "Recall into the mailboxes"): whether the original was removed from this
   * recipient's mailbox (`removed`) or may still be there (`kept`). Unset: no purge, nothing said.
   */
  removal?: "removed" | "kept" | null;
}

import type { EarlyWaveMarks } from "./compose.js";

export interface Rendered {
  subject: string;
  html: string;
  text: string;
}

export interface Renderer {
  renderMessage(input: MessageInput): Rendered;
  renderCorrection(input: CorrectionInput): Rendered;
  /** The house templates a Markdown body may name (templates/messages/), sorted. */
  templates(): readonly string[];
  /**
   * A staged send's early-wave marks for a message (its report link, its reply address): set where
   * staged sends are configured (runtime.ts), so that every build of a staged send — submit, review
   * page, approval request, fan-out — is the same two mails (mail/compose.ts composeStaged).
   */
  earlyWaveMarks?: (id: string) => EarlyWaveMarks;
}

/** What the house templates say about the company (COMPANY_NAME, COMPANY_LOGO_URL, COMPANY_FOOTER). */
export interface HouseStyle {
  companyName: string;
  /** An https URL, or null: the header shows the name alone. */
  logoUrl: string | null;
  footer: string;
}

/** The settings' defaults (config.ts), for renderers built without a configuration (tests, tools). */
export const DEFAULT_HOUSE_STYLE: HouseStyle = {
  companyName: "Corp",
  logoUrl: null,
  footer: "Internal communication — please do not forward outside the company.",
};

/** The house template of a Markdown body that names none. */
export const DEFAULT_TEMPLATE = "announcement";

/**
 * `<repo>/templates/`, resolved from this module's location: src/mail/render.ts under tsx and
 * vitest, <dist>/src/mail/render.js once compiled (`npm run build`; templates/ sits next to dist/).
 */
export function templatesDir(): string {
  const up = import.meta.url.endsWith(".js") ? "../../../templates/" : "../../templates/";
  return fileURLToPath(new URL(up, import.meta.url));
}

export function createRenderer(dir: string, houseStyle: HouseStyle = DEFAULT_HOUSE_STYLE): Renderer {
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
  const houses = compileHouseTemplates(join(dir, "messages"), (file, plain) => compile(join("messages", file), plain));
  const names = Object.freeze([...houses.keys()]);

  return {
    renderMessage(input) {
      if (input.markdown) return renderMarkdown(input, input.markdown);
      const data = { subject: input.subject, text: input.text, html: nonEmpty(input.html), from: input.from };
      return { subject: input.subject, html: messageHtml(data), text: tidyText(messageText(data)) };
    },
    templates: () => names,
    renderCorrection(input) {
      const data = {
        originalSubject: input.originalSubject,
        sentAt: input.sentAt ? formatDate(input.sentAt) : null,
        correctionText: nonEmpty(input.correctionText),
        from: input.from,
        removed: input.removal === "removed",
        kept: input.removal === "kept",
      };
      return {
        // The file ends with a newline; a subject is one line.
        subject: correctionSubject(data).trim(),
        html: correctionHtml(data),
        text: tidyText(correctionText(data)),
      };
    },
  };

  function renderMarkdown(input: MessageInput, markdown: string): Rendered {
    const name = input.template || DEFAULT_TEMPLATE;
    const house = houses.get(name);
    if (!house) throw new Error(`unknown house template ${JSON.stringify(name)} (templates: ${names.join(", ") || "none"})`);
    const body = markdownToHtml(markdown);
    const data = { subject: input.subject, from: input.from, companyName: houseStyle.companyName, logoUrl: houseStyle.logoUrl, footer: houseStyle.footer };
    return {
      subject: input.subject,
      html: house.html({ ...data, body: new hb.SafeString(body) }),
      text: tidyText(house.text({ ...data, body: htmlToPlainText(body) })),
    };
  }
}

type Template = (data: object) => string;

/**
 * Every `<name>.html.hbs` of the folder with its `<name>.txt.hbs` (one without the other is a
 * mistake, refused at start), by name, sorted. No folder: no house templates.
 */
function compileHouseTemplates(dir: string, compile: (file: string, plain: boolean) => Template): Map<string, { html: Template; text: Template }> {
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return new Map();
    throw e;
  }
  const houses = new Map<string, { html: Template; text: Template }>();
  const names = new Set(files.map((f) => /^([a-z0-9][a-z0-9-]*)\.(?:html|txt)\.hbs$/.exec(f)?.[1]).filter((n) => n !== undefined));
  for (const name of [...names].sort()) {
    for (const part of ["html", "txt"]) {
      if (!files.includes(`${name}.${part}.hbs`)) throw new Error(`house template ${name}: ${join(dir, `${name}.${part}.hbs`)} is missing`);
    }
    houses.set(name, { html: compile(`${name}.html.hbs`, false), text: compile(`${name}.txt.hbs`, true) });
  }
  return houses;
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
