/**
 * The exact mail a message (or its correction) is: rendered parts and MIME bytes, built by one
 * function for the preview, the approval request, the submit check and the fan-out alike, and its
 * digest — the SHA-256 of those bytes with the envelope and `Date:` aside (and `Thread-Index:`,
 * which Outlook derives from the date). What an approver approved is compared, at release, with
 * what is about to go out.
 */
import { createHash } from "node:crypto";
import type { Message } from "../domain/message.js";
import { addressOf } from "../domain/sender.js";
import { buildMime } from "./mime.js";
import { stagedFooter } from "./staged-footer.js";
import type { Rendered, Renderer } from "./render.js";

/**
 * The fields a message's mail is built from. `markdown` ("" when `text`/`html` are the body) is
 * rendered into the house `template`; `from` is the stored sender as domain/sender.ts formats it.
 */
export type OriginalFields = Pick<Message, "subject" | "text" | "html" | "markdown" | "template" | "from" | "toHeader" | "messageId">;

export interface CorrectionFields {
  /** The original's subject, sender, To: and Message-ID: the correction threads under it. */
  original: Pick<OriginalFields, "subject" | "from" | "toHeader" | "messageId">;
  /** When the original went out; null words the notice without a date. */
  sentAt: Date | null;
  /** Approved replacement text, or null for the standard correction. */
  correctionText: string | null;
  /** The standard correction's word on the purge (mail/render.ts CorrectionInput.removal). */
  removal?: "removed" | "kept" | null;
}

export interface ComposedMail {
  raw: Buffer;
  /** Hex SHA-256 of `raw` with Date: and Thread-Index: aside (mimeDigest). */
  digest: string;
  parts: Rendered;
  envelopeFrom: string;
}

/** Header fields the digest leaves aside: the build date, and Outlook's thread index derived from it. */
const VOLATILE = /^(date|thread-index):/i;

/** SHA-256 (hex) of a built message, its `Date:` and `Thread-Index:` header fields aside. */
export function mimeDigest(raw: Buffer): string {
  const text = raw.toString("latin1");
  const end = text.indexOf("\r\n\r\n");
  const head = end < 0 ? text : text.slice(0, end);
  const body = end < 0 ? "" : text.slice(end);
  const kept: string[] = [];
  let skipping = false;
  for (const line of head.split("\r\n")) {
    const continuation = /^[ \t]/.test(line);
    if (!continuation) skipping = VOLATILE.test(line);
    if (!skipping) kept.push(line);
  }
  return createHash("sha256").update(kept.join("\r\n") + body, "latin1").digest("hex");
}

async function finish(parts: Rendered, mime: Parameters<typeof buildMime>[0]): Promise<ComposedMail> {
  const raw = await buildMime(mime);
  return { raw, digest: mimeDigest(raw), parts, envelopeFrom: addressOf(mime.from) };
}

export function composeOriginal(renderer: Renderer, m: OriginalFields, date: Date): Promise<ComposedMail> {
  const parts = renderer.renderMessage({ subject: m.subject, text: m.text, html: m.html ?? undefined, markdown: m.markdown || undefined, template: m.template || undefined, from: m.from });
  return finish(parts, { from: m.from, toHeader: m.toHeader, subject: parts.subject, html: parts.html, text: parts.text, messageId: m.messageId, date });
}

/** What a staged send's early waves (seed cohort and canary) carry that the rest does not. */
export interface EarlyWaveMarks {
  /** The "Report a problem with this message" link (waves/report-link.ts). */
  reportUrl: string;
  /** Airlock's inbound listener for this message's replies (inbound/verp.ts), or null without RETURN_PATH_DOMAIN. */
  replyTo: string | null;
}

/**
 * A staged send is two mails: the early waves' (the report footer, and replies to Airlock's
 * listener) and the rest's (the plain original). Its digest covers both, each with its volatile
 * headers aside: one approval names every byte of either (promise 7).
 */
export interface StagedMail {
  early: ComposedMail;
  rest: ComposedMail;
  digest: string;
}

export async function composeStaged(renderer: Renderer, m: OriginalFields, date: Date, marks: EarlyWaveMarks): Promise<StagedMail> {
  const rest = await composeOriginal(renderer, m, date);
  const footed = stagedFooter(rest.parts, marks.reportUrl);
  const parts = { subject: rest.parts.subject, text: footed.text, html: footed.html ?? rest.parts.html };
  const early = await finish(parts, {
    from: m.from,
    toHeader: m.toHeader,
    subject: parts.subject,
    html: parts.html,
    text: parts.text,
    messageId: m.messageId,
    date,
    ...(marks.replyTo ? { replyTo: marks.replyTo } : {}),
  });
  return { early, rest, digest: stagedDigest(early.digest, rest.digest) };
}

/** The digest of a staged send: both mails' digests, in a labelled order. */
export function stagedDigest(early: string, rest: string): string {
  return createHash("sha256").update(`airlock-staged-v1\nearly ${early}\nrest ${rest}\n`).digest("hex");
}

/** The correction's own Message-ID, derived from the original's. */
function correctionMessageId(originalMessageId: string): string {
  return originalMessageId.replace(/^<airlock\./, "<airlock-correction.");
}

export function composeCorrection(renderer: Renderer, c: CorrectionFields, date: Date): Promise<ComposedMail> {
  const parts = renderer.renderCorrection({ originalSubject: c.original.subject, sentAt: c.sentAt, correctionText: c.correctionText, from: c.original.from, removal: c.removal ?? null });
  return finish(parts, {
    from: c.original.from,
    toHeader: c.original.toHeader,
    subject: parts.subject,
    html: parts.html,
    text: parts.text,
    messageId: correctionMessageId(c.original.messageId),
    inReplyTo: c.original.messageId,
    references: c.original.messageId,
    date,
  });
}
