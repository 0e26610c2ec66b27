/**
 * What a failed SMTP transaction means for its recipients. The sender retries `temporary`,
 * records `permanent`, and retries `ambiguous` while counting the recipients as possible
 * duplicates.
 *
 * Why the transport has to tell us whether the body went out: nodemailer 10 reports a dropped
 * connection or a socket timeout with `command: "CONN"` whatever stage the transaction was in
 * (smtp-connection `_onClose` / `_onTimeout`), so the error alone cannot separate "lost before
 * DATA" (nothing delivered) from "lost after the final dot, before the 250" (maybe delivered).
 */
export const SMTP_ERROR_KINDS = {
  permanent:
    "The server refused the message for good (5xx reply to MAIL FROM, RCPT TO or DATA), or nodemailer refused the envelope or message itself: do not retry.",
  temporary:
    "Not delivered, may succeed later: a 4xx reply (or 503), a 4xx/5xx during connect, EHLO or AUTH (a server or configuration problem, not this message), or a connection failure before the whole body was handed over.",
  ambiguous:
    "The connection was lost or timed out after the whole body was handed over and before the final reply: the server may or may not have accepted it, so a retry may deliver twice.",
} as const;

export type SmtpErrorKind = keyof typeof SMTP_ERROR_KINDS;

/** The fields nodemailer puts on its errors (see nodemailer's `NodemailerError`). */
export interface SmtpErrorFields {
  code?: string | undefined;
  responseCode?: number | undefined;
  command?: string | undefined;
  response?: string | undefined;
}

/** One recipient refused at RCPT TO while the transaction went on for the others. */
export interface RecipientRejection {
  address: string;
  /** SMTP reply code to RCPT TO, or null when nodemailer gave none. */
  code: number | null;
  response: string;
  /** `temporary` for a 4xx (e.g. 452 too many recipients, greylisting): retry that recipient. */
  kind: "permanent" | "temporary";
}

/**
 * What the server answered for one transaction. Here rather than in transport.ts because both
 * SMTP clients (smtp-client.ts and transport.ts's nodemailer one) produce it, and transport.ts
 * imports smtp-client.ts.
 */
export interface SendResult {
  accepted: string[];
  rejected: RecipientRejection[];
}

/** A whole transaction failed. Per-recipient refusals are not errors: see `SendResult.rejected`. */
export class SmtpSendError extends Error {
  override name = "SmtpSendError";
  readonly code: string | undefined;
  readonly responseCode: number | undefined;
  readonly command: string | undefined;
  readonly response: string | undefined;

  constructor(
    readonly kind: SmtpErrorKind,
    cause: unknown,
  ) {
    const f = fieldsOf(cause);
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.code = f.code;
    this.responseCode = f.responseCode;
    this.command = f.command;
    this.response = f.response;
  }
}

/** Commands whose reply is about this message; a reply to anything else is about the session. */
const MESSAGE_COMMANDS = new Set(["MAIL FROM", "RCPT TO", "DATA"]);
/** nodemailer refusing locally (invalid address, no recipients, message too large): same result next time. */
const LOCAL_REFUSALS = new Set(["EENVELOPE", "EMESSAGE"]);

/**
 * @param bodySent whether the whole message body had been handed to the connection (so the
 *   terminating dot may have reached the server) when the error happened.
 */
export function classifySmtpError(err: unknown, bodySent: boolean): SmtpErrorKind {
  const f = fieldsOf(err);
  if (f.responseCode !== undefined) {
    // The server answered, so it decided: nothing is ambiguous about a reply.
    if (!MESSAGE_COMMANDS.has(f.command ?? "")) return "temporary";
    return isPermanentReply(f.responseCode) ? "permanent" : "temporary";
  }
  if (f.code !== undefined && LOCAL_REFUSALS.has(f.code)) return "permanent";
  // No reply: ECONNECTION, ESOCKET (incl. ECONNREFUSED), ETIMEDOUT, EDNS, ETLS, pool closed, ...
  return bodySent ? "ambiguous" : "temporary";
}

/** 5xx except 503 (bad sequence: the session's state, not the message), as nodemailer's `isPermanentResponseCode`. */
export function isPermanentReply(code: number): boolean {
  return code >= 500 && code < 600 && code !== 503;
}

function fieldsOf(err: unknown): SmtpErrorFields {
  if (typeof err !== "object" || err === null) return {};
  const e = err as Record<string, unknown>;
  return {
    code: typeof e.code === "string" ? e.code : undefined,
    responseCode: typeof e.responseCode === "number" ? e.responseCode : undefined,
    command: typeof e.command === "string" ? e.command : undefined,
    response: typeof e.response === "string" ? e.response : undefined,
  };
}
