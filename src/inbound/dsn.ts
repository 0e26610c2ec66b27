/**
 * Delivery status notifications (RFC 3464): `multipart/report; report-type=delivery-status`, whose
 * `message/delivery-status` part holds one block of per-message fields, then one block per
 * recipient (blocks separated by blank lines, fields folded like headers).
 *
 * mailparser 3.9.31 by default appends the `message/delivery-status` part to `text` (it counts it
 * as a text type, lib/mail-parser.js `textTypes`); with `keepDeliveryStatus: true` it comes as an
 * attachment of contentType `message/delivery-status` whose `content` is the decoded part. That is
 * what this module reads. `message/global-delivery-status` (RFC 6533, UTF-8 fields) is never a
 * text type there and arrives as an attachment either way.
 *
 * What is kept per recipient is bounded and stripped of control characters: the values go to the
 * audit trail, the dashboard and notification mails.
 */
import { simpleParser, type ParsedMail } from "mailparser";
import { oneLine } from "./bounded-text.js";

export type DsnOutcome = "failed" | "delayed" | "delivered";

export interface DsnRecipient {
  /** RFC 3464 Action, lower case: failed, delayed, delivered, relayed, expanded (or what the MTA wrote). */
  action: string;
  /** failed: not delivered and no more attempts; delayed: still trying; delivered: delivered, relayed or expanded. */
  outcome: DsnOutcome;
  /** RFC 3463 status "class.subject.detail", e.g. "5.1.1"; "" when missing or malformed. */
  status: string;
  /** Status class 5 (permanent failure); a failed action with a 4.x.x status (given up after retries) is not. */
  permanent: boolean;
  finalRecipient?: string;
  originalRecipient?: string;
  /** Diagnostic-Code without its type ("smtp; "), whitespace collapsed, at most MAX_TEXT characters. */
  diagnostic?: string;
  remoteMta?: string;
}

export interface Dsn {
  reportingMta?: string;
  /** Original-Envelope-Id when the sender gave ENVID. */
  envelopeId?: string;
  recipients: DsnRecipient[];
}

/** Longest kept value: a diagnostic is a line or two (Gmail's, with its help link, is ~300). */
export const MAX_TEXT = 500;
/** Recipient blocks read; more are ignored. One envelope recipient per VERP address makes one the norm. */
export const MAX_RECIPIENTS = 100;

const STATUS = /^([245])\.(\d{1,3})\.(\d{1,3})\b/;

/** Parses a whole received mail; null when it holds no delivery-status part. Never throws on bad mail. */
export async function parseDsnMail(raw: Buffer | string): Promise<Dsn | null> {
  let parsed: ParsedMail;
  try {
    parsed = await simpleParser(raw, { keepDeliveryStatus: true, skipHtmlToText: true, skipTextToHtml: true, skipTextLinks: true, skipImageLinks: true });
  } catch {
    return null;
  }
  return dsnOfParsed(parsed);
}

/** The DSN of a mail parsed with `keepDeliveryStatus: true`, or null. */
export function dsnOfParsed(parsed: ParsedMail): Dsn | null {
  const part = parsed.attachments.find((a) => /^message\/(global-)?delivery-status$/i.test(a.contentType));
  if (!part) return null;
  const dsn = parseDeliveryStatus(part.content.toString("utf8"));
  return dsn.recipients.length ? dsn : null;
}

/** Pure: the fields of a `message/delivery-status` body. */
export function parseDeliveryStatus(text: string): Dsn {
  const blocks = fieldBlocks(text);
  const dsn: Dsn = { recipients: [] };
  const head = blocks[0];
  if (head && !head.has("final-recipient")) {
    blocks.shift();
    const mta = head.get("reporting-mta");
    if (mta) dsn.reportingMta = typedValue(mta);
    const envid = head.get("original-envelope-id");
    if (envid) dsn.envelopeId = clean(envid);
  }
  for (const b of blocks) {
    if (dsn.recipients.length >= MAX_RECIPIENTS) break;
    const final = b.get("final-recipient");
    const rawAction = b.get("action");
    if (!final && !rawAction) continue; // a stray block (some MTAs add blank lines inside the first)
    const action = clean(rawAction ?? "").toLowerCase().split(/[\s(]/)[0] ?? "";
    const m = STATUS.exec(clean(b.get("status") ?? ""));
    const status = m ? `${m[1]}.${Number(m[2])}.${Number(m[3])}` : "";
    const r: DsnRecipient = { action, outcome: outcomeOf(action, status), status, permanent: status.startsWith("5.") };
    if (final) r.finalRecipient = typedValue(final);
    const original = b.get("original-recipient");
    if (original) r.originalRecipient = typedValue(original);
    const diag = b.get("diagnostic-code");
    if (diag) r.diagnostic = typedValue(diag);
    const remote = b.get("remote-mta");
    if (remote) r.remoteMta = typedValue(remote);
    dsn.recipients.push(r);
  }
  return dsn;
}

function outcomeOf(action: string, status: string): DsnOutcome {
  if (action === "failed") return "failed";
  if (action === "delayed") return "delayed";
  if (action === "delivered" || action === "relayed" || action === "expanded") return "delivered";
  // No usable Action (RFC 3464 makes it required; some gateways omit it): go by the status class.
  return status.startsWith("2.") ? "delivered" : status.startsWith("4.") ? "delayed" : "failed";
}

/** Blocks of fields (lower-cased names; the first occurrence of a name wins), unfolding continuation lines. */
function fieldBlocks(text: string): Array<Map<string, string>> {
  const blocks: Array<Map<string, string>> = [];
  let current = new Map<string, string>();
  let last: string | null = null;
  for (const line of text.split(/\r?\n/)) {
    if (line.trim() === "") {
      if (current.size) blocks.push(current);
      current = new Map();
      last = null;
    } else if (/^[ \t]/.test(line)) {
      if (last !== null) current.set(last, `${current.get(last)!} ${line.trim()}`);
    } else {
      const colon = line.indexOf(":");
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      if (current.has(name)) {
        last = null; // a repeated field: keep the first, ignore its continuations
        continue;
      }
      current.set(name, line.slice(colon + 1).trim());
      last = name;
    }
  }
  if (current.size) blocks.push(current);
  return blocks;
}

/** `rfc822; a@b` → `a@b`; `smtp; 550 …` → `550 …` (the type before the first ";" dropped when it looks like one). */
function typedValue(v: string): string {
  const m = /^([A-Za-z0-9-]{1,20})\s*;\s*([\s\S]*)$/.exec(v);
  return clean(m ? m[2]! : v);
}

function clean(v: string): string {
  return oneLine(v, MAX_TEXT);
}

/** The recipient block a bounce is about: the first failed one, else the first delayed, else the first. */
export function mainRecipient(dsn: Dsn): DsnRecipient | undefined {
  return dsn.recipients.find((r) => r.outcome === "failed") ?? dsn.recipients.find((r) => r.outcome === "delayed") ?? dsn.recipients[0];
}
