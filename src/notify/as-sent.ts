/**
 * What reviewers are shown is built by the same function the fan-out sends with (mail/compose.ts):
 * the approval request, the link pages and the dashboard show these parts and this digest, never a
 * rendering of their own. The build date does not matter: the digest leaves `Date:` aside.
 */
import type { Message } from "../domain/message.js";
import { composeCorrection, composeOriginal, composeStaged, type ComposedMail } from "../mail/compose.js";
import type { Renderer } from "../mail/render.js";
import type { AudienceDomains, SentMail } from "./notification-data.js";

function sentMail(of: SentMail["of"], m: Message, built: ComposedMail): SentMail {
  return { of, revision: m.revision, subject: built.parts.subject, from: m.from, text: built.parts.text, html: built.parts.html, digest: built.digest };
}

/**
 * The message as it will go out. Throws when it cannot be built (the fan-out would halt on it too).
 * A staged send: its early waves' mail (with the report footer), and the digest of both mails —
 * the rest get the same without the footer and the Reply-To (mail/compose.ts composeStaged).
 */
export async function originalAsSent(renderer: Renderer, m: Message, date: Date): Promise<SentMail> {
  if (m.waves && renderer.earlyWaveMarks) {
    const staged = await composeStaged(renderer, m, date, renderer.earlyWaveMarks(m.id));
    return { ...sentMail("original", m, staged.early), digest: staged.digest };
  }
  return sentMail("original", m, await composeOriginal(renderer, m, date));
}

/**
 * The correction as it would go out with the text proposed at the recall (the standard notice when
 * there is none): what `approveCorrection` approves, built as the service built it for its digest.
 */
export async function correctionAsSent(renderer: Renderer, m: Message, date: Date): Promise<SentMail> {
  const built = await composeCorrection(renderer, { original: m, sentAt: m.releaseAt ? new Date(m.releaseAt) : null, correctionText: m.correction?.text || null }, date);
  return sentMail("correction", m, built);
}

/** The original or its correction as it goes out: the one switch every page, link and preview uses. */
export function asSent(renderer: Renderer, m: Message, of: SentMail["of"], date: Date): Promise<SentMail> {
  return of === "original" ? originalAsSent(renderer, m, date) : correctionAsSent(renderer, m, date);
}

/**
 * The inside of the HTML part's `<body>`, to show it inside another page or mail (a document cannot
 * be nested in one). It is our template's output, the author's HTML already sanitized in it.
 */
export function htmlBody(html: string): string {
  const open = /<body\b[^>]*>/i.exec(html);
  const close = html.toLowerCase().lastIndexOf("</body>");
  if (!open || close < open.index) return html;
  return html.slice(open.index + open[0].length, close).trim();
}

/**
 * Recipients by domain of each audience the message names, as recorded for the audience's current
 * version (the message froze its set at submission: `changedSinceSubmit` says when they differ).
 */
export async function audienceDomains(
  domainsOf: (name: string) => Promise<Array<{ domain: string; count: number }>>,
  frozen: ReadonlyArray<{ name: string; count: number }>,
): Promise<AudienceDomains[]> {
  const out: AudienceDomains[] = [];
  const all = await Promise.all(frozen.map((a) => domainsOf(a.name)));
  for (const [i, a] of frozen.entries()) {
    const domains = all[i]!;
    if (domains.length === 0) continue;
    const total = domains.reduce((n, d) => n + d.count, 0);
    out.push({ name: a.name, domains, changedSinceSubmit: total !== a.count });
  }
  return out;
}
