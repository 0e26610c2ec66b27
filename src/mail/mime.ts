/**
 * Builds the MIME message once per message (every SMTP transaction of the fan-out sends the
 * same bytes, so every copy shares one Message-ID), with nodemailer's MailComposer.
 */
import { createHash, randomBytes } from "node:crypto";
import MailComposer from "nodemailer/lib/mail-composer";

export interface MimeInput {
  /** Header From, e.g. `Internal Communications <comms@corp.example>`. */
  from: string;
  /** The visible To: naming the audience (see audienceToHeader); never the envelope. */
  toHeader: string;
  subject: string;
  html: string;
  text: string;
  /** `<...@...>`, see newMessageId. */
  messageId: string;
  /** For a correction: the original's Message-ID. */
  inReplyTo?: string;
  /** Where replies go (a staged send's early waves: Airlock's inbound listener); absent: to From. */
  replyTo?: string;
  /** The thread's Message-IDs, oldest first; defaults to `inReplyTo`. */
  references?: string | string[];
  date: Date;
}

/** CR and LF (header injection), other C0/C1 controls, DEL, and the Unicode line separators. */
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const MSG_ID = /^<[^<>\s@]+@[^<>\s@]+>$/;
const CORRECTION_PREFIX = /^Correction:\s*/i;

export async function buildMime(input: MimeInput): Promise<Buffer> {
  for (const field of ["subject", "from", "toHeader"] as const) {
    if (CONTROL.test(input[field])) throw new Error(`${field} contains a control character`);
  }
  const references = [input.references ?? input.inReplyTo ?? []].flat();
  for (const id of [input.messageId, ...(input.inReplyTo ? [input.inReplyTo] : []), ...references]) {
    if (!MSG_ID.test(id)) throw new Error(`invalid Message-ID ${JSON.stringify(id)}`);
  }

  // Outlook threads by Thread-Topic and by the GUID inside Thread-Index (Exchange derives the
  // conversation id from it). Both are set on the original too: the correction can only join a
  // conversation whose GUID it can reproduce, so both derive it from the thread's root Message-ID.
  const root = references[0] ?? input.inReplyTo ?? input.messageId;
  const headers: Record<string, string> = {
    "Auto-Submitted": "auto-generated",
    // Exchange/Outlook: no out-of-office, delivery or read receipts back to us from a million mailboxes.
    "X-Auto-Response-Suppress": "All",
    "Thread-Topic": input.subject.replace(CORRECTION_PREFIX, ""),
    "Thread-Index": threadIndex(root, input.date),
  };

  const composer = new MailComposer({
    from: input.from,
    to: input.toHeader,
    subject: input.subject,
    messageId: input.messageId,
    date: input.date,
    text: input.text,
    html: input.html,
    headers,
    ...(input.inReplyTo ? { inReplyTo: input.inReplyTo } : {}),
    ...(input.replyTo ? { replyTo: input.replyTo } : {}),
    ...(references.length ? { references } : {}),
    // CRLF everywhere: the bytes built here are exactly the bytes every transaction sends.
    newline: "windows",
    // Multipart boundaries derived from the Message-ID instead of random: the same message builds
    // the same bytes, so its digest (compose.ts) is the same at submit, approval and release.
    baseBoundary: createHash("sha256").update(`boundary:${input.messageId}`).digest("hex").slice(0, 24),
    // Content is always inline strings; never let a value be read as a path or URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  });
  return composer.compile().build();
}

/**
 * Outlook's Thread-Index header block (MS-OXOMSG 2.2.1.3 PidTagConversationIndex), base64:
 * 1 reserved byte (0x01), the upper 40 bits of the FILETIME of `date` (big-endian), then a
 * 16-byte GUID. The GUID is a hash of the thread's root Message-ID, so every copy of the
 * original and its correction compute the same one without storing anything.
 */
export function threadIndex(rootMessageId: string, date: Date): string {
  const buf = Buffer.alloc(22);
  buf[0] = 0x01;
  // FILETIME: 100 ns ticks since 1601-01-01. Dropping the low 24 bits leaves 40.
  const filetime = (BigInt(date.getTime()) + 11_644_473_600_000n) * 10_000n;
  buf.writeUIntBE(Number(filetime >> 24n), 1, 5);
  const guid = createHash("sha256").update(rootMessageId).digest().subarray(0, 16);
  guid[6] = ((guid[6] ?? 0) & 0x0f) | 0x80; // RFC 9562 version 8 (custom/hash-based)
  guid[8] = ((guid[8] ?? 0) & 0x3f) | 0x80; // RFC 4122 variant
  guid.copy(buf, 6);
  return buf.toString("base64");
}

/** `<airlock.ID.RANDOMHEX@domain>`: unique per build, recognisably ours, names the message. */
export function newMessageId(domain: string, id: string): string {
  if (!/^[A-Za-z0-9.-]+$/.test(domain)) throw new Error(`invalid domain ${JSON.stringify(domain)}`);
  if (!/^[A-Za-z0-9._-]+$/.test(id)) throw new Error(`invalid message id ${JSON.stringify(id)}`);
  return `<airlock.${id}.${randomBytes(8).toString("hex")}@${domain}>`;
}

/**
 * The visible To: of a message: one `"All employees" <all-employees@domain>` per audience list
 * (the list name with `-` as space, first letter capitalised, as in the spec's example). Explicit
 * addresses are never shown (they would disclose each other); with no list at all the header
 * is the empty group `Undisclosed recipients:;`.
 */
export function audienceToHeader(listNames: string[], explicitCount: number, domain: string): string {
  const lists = [...new Set(listNames)].filter((n) => n.trim().length > 0);
  // Explicit recipients (explicitCount) stay undisclosed whether or not lists are named.
  if (lists.length === 0) return "Undisclosed recipients:;";
  return lists
    .map((name) => {
      const words = name.replace(/[-_]+/g, " ").trim();
      const display = words.charAt(0).toUpperCase() + words.slice(1);
      const local = name.toLowerCase().replace(/[^a-z0-9.-]+/g, "-");
      return `"${display.replace(/[\\"]/g, "\\$&")}" <${local}@${domain}>`;
    })
    .join(", ");
}
