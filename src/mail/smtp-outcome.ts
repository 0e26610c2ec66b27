/**
 * The one rule for what an SMTP result means for a recipient, shared by the fan-out (originals and
 * corrections) and notifications: sent, failed for good, or retried later with backoff. Pure.
 *
 * - A refusal the server meant for good (5xx, an invalid envelope) fails at once: no retry.
 * - A temporary one (4xx, a connection lost before the body went out) is retried; so is an
 *   ambiguous one (connection lost after the body, before the reply), flagged so the caller can
 *   count possible duplicates.
 * - On the last attempt nothing is retried: what would have been is recorded failed, its reply
 *   prefixed with GAVE_UP so the record says it was not the server's final word.
 * How a transport's error becomes permanent, temporary or ambiguous is smtp-errors.ts.
 */
import type { RecipientRejection, SmtpSendError } from "./smtp-errors.js";

export type SmtpOutcome =
  | { type: "sent" }
  | { type: "failed"; reply: string }
  | { type: "retry"; reply: string; ambiguous: boolean };

/** Prefix of a failure recorded because the attempts ran out, not because the server refused for good. */
export const GAVE_UP = "gave up after the last attempt: ";

/** A thrown error's message can be a whole SMTP transcript: the reply recorded is cut here. */
const MAX_ERROR_REPLY = 500;

/**
 * One recipient of a transaction the server answered.
 * @param rejection its refusal at RCPT TO, or undefined when it was accepted.
 */
export function recipientOutcome(rejection: RecipientRejection | undefined, lastAttempt: boolean): SmtpOutcome {
  if (!rejection) return { type: "sent" };
  const reply = `${rejection.code ?? ""} ${rejection.response}`.trim();
  // A 4xx RCPT refusal (greylisting, mailbox busy) is retried like any temporary failure.
  return rejection.kind === "temporary" ? temporary(reply, false, lastAttempt) : { type: "failed", reply };
}

/** Every recipient of a transaction that failed as a whole (the transport threw `SmtpSendError`). */
export function transactionOutcome(err: SmtpSendError, lastAttempt: boolean): Exclude<SmtpOutcome, { type: "sent" }> {
  const reply = err.message.slice(0, MAX_ERROR_REPLY);
  return err.kind === "permanent" ? { type: "failed", reply } : temporary(reply, err.kind === "ambiguous", lastAttempt);
}

function temporary(reply: string, ambiguous: boolean, lastAttempt: boolean): Exclude<SmtpOutcome, { type: "sent" }> {
  return lastAttempt ? { type: "failed", reply: GAVE_UP + reply } : { type: "retry", reply, ambiguous };
}

/**
 * Fan-out attempts per batch job. Temporary failures retry the batch with exponential backoff
 * from 1 s, capped at 60 s (a greylisting or throttling server usually recovers within minutes):
 * 12 attempts span about 6 minutes. After the last attempt the remaining recipients are recorded
 * failed.
 */
export const FANOUT_ATTEMPTS = 12;

/** BullMQ's custom backoff for fan-out jobs; `attemptsMade` counts the attempt that just failed (1 after the first). */
export function fanoutBackoff(attemptsMade: number): number {
  return Math.min(60_000, 1000 * 2 ** Math.max(0, attemptsMade - 1));
}

/**
 * Notification attempts: an SMTP hiccup should not lose an approval request, and a person waiting
 * for one minutes is fine: 8 attempts, 2 s doubling (BullMQ's built-in exponential: 2 s, 4 s, ...
 * 128 s; the last attempt about 4 minutes after the first). Then the failure is recorded in the
 * message's audit trail; the message's lifecycle never waits for it.
 */
export const NOTIFY_ATTEMPTS = 8;
export const NOTIFY_BACKOFF = { type: "exponential", delay: 2000 } as const;
