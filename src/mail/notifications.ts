/**
 * Renders the notification emails (approval request, reminder, scheduled, recalled, corrected,
 * rejected, expired, correction request, halted) from `templates/notify/`. Same rules as
 * render.ts: a private Handlebars instance, strict mode, HTML escaped by `{{ }}`, text/plain and
 * subjects compiled with `noEscape`, the author's body only through `paragraphs` / `sanitizeHtml`,
 * or — the mail as it goes out — through `sentHtml`, the HTML part our template built (the
 * author's HTML already sanitized in it; see notify/as-sent.ts).
 *
 * The data arrives already formatted (see notify/notification-data.ts); this module only adds
 * what a logic-less template cannot compute (flags, joined names) and keeps single-line values
 * on one line, so an author name or subject cannot forge a line (a fake link) in the text part.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Handlebars from "handlebars";
import { htmlBody } from "../notify/as-sent.js";
import { type FieldDiff, type MessageSummary, NOTIFICATION_KINDS, type NotificationDataByKind, type NotificationKind, type SentMail } from "../notify/notification-data.js";
import { type HandlebarsEnv, type Rendered, registerMailHelpers, templatesDir, tidyText } from "./render.js";

export interface NotificationRenderer {
  render<K extends NotificationKind>(kind: K, data: NotificationDataByKind[K]): Rendered;
}

/** The reminder is the approval request worded as a reminder: one set of templates. */
const TEMPLATE: Record<NotificationKind, string> = {
  approval_request: "approval_request",
  reminder: "approval_request",
  scheduled: "scheduled",
  recalled: "recalled",
  corrected: "corrected",
  rejected: "rejected",
  expired: "expired",
  correction_request: "correction_request",
  halted: "halted",
};

/** The label above the subject in the HTML part. */
const KICKER: Record<NotificationKind, string> = {
  approval_request: "Approval needed",
  reminder: "Reminder: approval needed",
  scheduled: "Scheduled",
  recalled: "Recalled",
  corrected: "Correction sent",
  rejected: "Rejected",
  expired: "Expired",
  correction_request: "Correction text to approve",
  halted: "Halted by Airlock",
};

/** Shared pieces: name, file under notify/, plain text (noEscape) or HTML. */
const PARTIALS: Array<[string, string, boolean]> = [
  ["frame", "partials/frame.html.hbs", false],
  ["summary", "partials/summary.html.hbs", false],
  ["summaryText", "partials/summary.txt.hbs", true],
  ["sent", "partials/sent.html.hbs", false],
  ["sentText", "partials/sent.txt.hbs", true],
];

type AnyNotification = { [K in NotificationKind]: { kind: K; data: NotificationDataByKind[K] } }[NotificationKind];

export function createNotificationRenderer(dir = templatesDir()): NotificationRenderer {
  const hb = Handlebars.create();
  registerMailHelpers(hb);
  registerFormatHelpers(hb);
  // The HTML part as built by mail/compose.ts (our template; the author's HTML sanitized in it), inside its <body>.
  hb.registerHelper("sentHtml", (html: unknown) => new hb.SafeString(htmlBody(String(html ?? ""))));

  const compile = (file: string, plain: boolean) =>
    hb.compile(readFileSync(join(dir, "notify", file), "utf8"), { strict: true, noEscape: plain });
  // Registered compiled, so each partial keeps its own escaping whatever template includes it.
  for (const [name, file, plain] of PARTIALS) hb.registerPartial(name, compile(file, plain));
  const templates = new Map(
    [...new Set(Object.values(TEMPLATE))].map((name) => [
      name,
      { subject: compile(`${name}.subject.hbs`, true), html: compile(`${name}.html.hbs`, false), text: compile(`${name}.txt.hbs`, true) },
    ]),
  );

  return {
    render(kind, data) {
      if (!NOTIFICATION_KINDS.includes(kind)) throw new Error(`unknown notification kind: ${String(kind)}`);
      const t = templates.get(TEMPLATE[kind])!;
      const view = viewOf({ kind, data } as AnyNotification);
      const subject = oneLine(t.subject(view));
      const full = { ...view, title: subject, kicker: KICKER[kind] };
      return { subject, html: t.html(full), text: tidyText(t.text(full)) };
    },
  };
}

/**
 * `number` (en-US thousands separators), `plural` (`{{plural n "person" "people"}}` gives
 * "1 person" / "840,000 people"; the plural defaults to the singular + "s"), `minutesFromNow`
 * ("in 12 minutes"), `names` (a list joined with commas) and `quote` (text/plain only).
 * Return plain strings, so HTML templates still escape them.
 */
export function registerFormatHelpers(hb: HandlebarsEnv): void {
  hb.registerHelper("number", (n: unknown) => formatNumber(n));
  hb.registerHelper("plural", (n: unknown, one: unknown, many: unknown) => {
    const singular = String(one);
    const pluralWord = typeof many === "string" ? many : `${singular}s`;
    return `${formatNumber(n)} ${Number(n) === 1 ? singular : pluralWord}`;
  });
  hb.registerHelper("minutesFromNow", (n: unknown) => {
    const m = Number(n);
    return m < 1 ? "in less than a minute" : m === 1 ? "in 1 minute" : `in ${formatNumber(m)} minutes`;
  });
  hb.registerHelper("names", (list: unknown) => (Array.isArray(list) ? list.map(String).join(", ") : ""));
  hb.registerHelper("quote", (text: unknown) => quote(String(text ?? "")));
}

/**
 * The author's text quoted line by line ("> "), as mail clients quote: in the text part it
 * cannot pass for part of the notice (a fake "Approve:" line), and clients show it as a quote.
 */
function quote(text: string): string {
  return text
    .replace(/\r\n?/g, "\n")
    .replace(/\n+$/, "")
    .split("\n")
    .map((line) => (line ? `> ${line}` : ">"))
    .join("\n");
}

const numberFormat = new Intl.NumberFormat("en-US");
function formatNumber(n: unknown): string {
  const v = Number(n);
  return Number.isFinite(v) ? numberFormat.format(v) : String(n);
}

/** One header line: control characters (CR, LF, tab, NEL, U+2028/9…) become a space. */
export function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g, " ").replace(/ {2,}/g, " ").trim();
}

function nonEmpty(s: string | null | undefined): string | null {
  return s && s.trim() ? s : null;
}

/**
 * The summary as templates show it (emails and link pages): one-line fields kept on one line,
 * an empty HTML body as none, and `authorLabel` ("Name <address>").
 */
export function summaryView(m: MessageSummary): MessageSummary & { authorLabel: string } {
  const author = oneLine(m.author);
  const authorName = oneLine(m.authorName) || author;
  return {
    ...m,
    subject: oneLine(m.subject),
    from: oneLine(m.from),
    author,
    authorName,
    authorLabel: authorName === author ? author : `${authorName} <${author}>`,
    audiences: m.audiences.map((a) => ({ name: oneLine(a.name), count: a.count, resolution: a.resolution ? oneLine(a.resolution) : null })),
    html: nonEmpty(m.html),
  };
}

function sentView(mail: SentMail) {
  return { ...mail, subject: oneLine(mail.subject), from: oneLine(mail.from), isCorrection: mail.of === "correction" };
}

function diffView(diff: FieldDiff[] | null) {
  if (!diff || diff.length === 0) return null;
  return diff.map((f) => ({
    field: f.field,
    lines: f.lines.map((l) => ({ op: l.op, text: l.text, added: l.op === "+", removed: l.op === "-" })),
  }));
}

/** What the templates see: the data, plus flags and cleaned-up one-line values. */
function viewOf(n: AnyNotification): Record<string, unknown> {
  const base = { kind: n.kind, recipientName: oneLine(n.data.recipientName), message: summaryView(n.data.message) };
  switch (n.kind) {
    case "approval_request":
    case "reminder":
      return {
        ...n.data,
        ...base,
        // The kind decides; `reminder` in the data says the same thing for callers that keep it.
        reminder: n.kind === "reminder",
        sendAt: nonEmpty(n.data.sendAt),
        approvedBy: n.data.approvedBy.map(oneLine),
        diff: diffView(n.data.diff),
        previousRevision: n.data.message.revision - 1,
        mail: sentView(n.data.mail),
      };
    case "scheduled":
      return { ...n.data, ...base, releaseTime: oneLine(n.data.releaseTime), approvedBy: n.data.approvedBy.map(oneLine) };
    case "recalled":
      return {
        ...n.data,
        ...base,
        recalledBy: oneLine(n.data.recalledBy),
        correctionText: nonEmpty(n.data.correctionText),
        // Both say the same; trust either: nobody is told "a correction goes to 0 people".
        nothingSent: n.data.nothingSent || n.data.delivered === 0,
      };
    case "corrected":
      return { ...n.data, ...base, recalledBy: oneLine(n.data.recalledBy) };
    case "rejected":
      return { ...n.data, ...base, rejectedBy: oneLine(n.data.rejectedBy) };
    case "expired":
      return { ...n.data, ...base };
    case "correction_request":
      return { ...n.data, ...base, recalledBy: oneLine(n.data.recalledBy), mail: sentView(n.data.mail) };
    case "halted":
      return { ...n.data, ...base, isCorrection: n.data.of === "correction", haltedAt: oneLine(n.data.haltedAt) };
  }
}
