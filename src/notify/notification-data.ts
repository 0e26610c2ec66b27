/**
 * What each notification email and each link page is given to render: plain data, already
 * formatted (dates as text, counts as numbers). The templates in templates/notify/ and
 * templates/pages/ render exactly these shapes; the worker (workers/notify.ts) and the link
 * routes (src/http/routes/links.ts) build them.
 */

export const NOTIFICATION_KINDS = ["approval_request", "reminder", "scheduled", "recalled", "corrected", "rejected", "expired", "correction_request", "halted"] as const;
export type NotificationKind = (typeof NOTIFICATION_KINDS)[number];

/** The message as a notification or a page describes it. */
export interface MessageSummary {
  id: string;
  revision: number;
  subject: string;
  /** Header From as it will be shown, e.g. `Internal Communications <comms@corp.example>`. */
  from: string;
  author: string;
  authorName: string;
  recipientCount: number;
  /** Each named audience with its size as frozen at submission (lists may overlap; the total is deduplicated). */
  /** `resolution`: a directory audience's "resolved from <group> at <time>: N recipients (+a, −r since the last resolution)". */
  audiences: Array<{ name: string; count: number; resolution?: string | null }>;
  /** Explicit addresses named in the message. */
  explicitCount: number;
  /** Plain-text body, and the author's HTML (untrusted: render only through `sanitizeHtml`). */
  text: string;
  html: string | null;
  /** Link to the message on the dashboard. */
  dashboardUrl: string;
  /** A staged send (SPEC "Staged sends"): it goes in waves; its seed audience, if any. Absent or null: all at once. */
  staged?: { seedAudience: string | null } | null;
}

/**
 * A mail exactly as it goes out: built by mail/compose.ts, the function the fan-out sends with
 * (never rendered another way), so what a reviewer reads is what recipients get.
 */
export interface SentMail {
  /** The message itself, or its correction notice (with the text proposed at the recall). */
  of: "original" | "correction";
  /** The revision it was built from. */
  revision: number;
  subject: string;
  /** Header From, as sent. */
  from: string;
  /** The text/plain part, verbatim. */
  text: string;
  /** The text/html part, a whole document built by our template (the author's HTML already sanitized in it). */
  html: string;
  /** SHA-256 (hex) of the MIME, Date aside: what an approval names. */
  digest: string;
}

/** Recipients of one audience by domain, as its current version records them. */
export interface AudienceDomains {
  name: string;
  domains: Array<{ domain: string; count: number }>;
  /** The domain counts do not add up to the count frozen at submission: the list changed since. */
  changedSinceSubmit: boolean;
}

/** One changed field between two revisions; unchanged fields are left out. */
export interface FieldDiff {
  /** Human name: "Subject", "Sender", "Template", "Audience", "Recipients", "Markdown", "Text", "HTML". */
  field: string;
  lines: Array<{ op: "+" | "-" | " "; text: string }>;
}

interface Base {
  /** Display name of the person the mail is for. */
  recipientName: string;
  message: MessageSummary;
}

export interface ApprovalRequestData extends Base {
  /** true for the half-TTL reminder: same content, worded as a reminder. */
  reminder: boolean;
  /** e.g. "15 minutes", "1 hour 30 minutes". */
  hold: string;
  /** Earliest time it could go out if approved now, e.g. "22 November 2026, 14:05 UTC". */
  earliestRelease: string;
  /** The requested send time, when the author set one. */
  sendAt: string | null;
  approvalsRequired: number;
  approvalsGiven: number;
  approvedBy: string[];
  /** When the request expires, formatted. */
  expiresAt: string;
  /** Changes against the previous revision; null for revision 1. */
  diff: FieldDiff[] | null;
  /** Both parts exactly as they will be sent, and the digest the approval names. */
  mail: SentMail;
  approveUrl: string;
  rejectUrl: string;
  /** The dashboard's review page (the same build, the approvals so far, Approve / Reject after sign-in). */
  reviewUrl: string;
}

/** A custom correction text waits for approval (CORRECTION_APPROVALS) by someone other than the recaller. */
export interface CorrectionRequestData extends Base {
  recalledBy: string;
  /** The recall's reason: for the approver, never mailed to recipients. */
  reason: string;
  /** Recipients who received the original (or were being handed it): they get the correction. */
  delivered: number;
  approvalsRequired: number;
  approvalsGiven: number;
  /** The correction exactly as it would go out with the proposed text. */
  mail: SentMail;
  approveUrl: string;
  rejectUrl: string;
  /** The dashboard's review page of the correction text (`?of=correction`). */
  reviewUrl: string;
}

/**
 * Airlock stopped a fan-out itself: what it was about to send is not what was approved (or cannot
 * be built), or a staged send's signal crossed its threshold (`signal`).
 */
export interface HaltedData extends Base {
  /** Whose fan-out: the message's, or its correction's. */
  of: "original" | "correction";
  /** What Airlock saw, as recorded with the halt. */
  reason: string;
  /** When it halted, formatted. */
  haltedAt: string;
  /** Recipients who had it when it halted (0 when the build itself was refused). */
  sent: number;
  /** What a staged send's early waves showed, when a signal halted it; null for any other halt. */
  signal: HaltSignals | null;
}

/** The kinds of signal that halt a staged send (an automatic reply never does). */
export type HaltingSignal = "failure" | "bounce" | "reply" | "report";

/**
 * A signal halt as its mail tells it: the waves, each count against its threshold and the
 * evidence (the earliest kept of each kind, at most a few). The worker keeps every one-line
 * value (addresses, statuses, SMTP replies) on one line; excerpts and notes keep their lines
 * (the store bounded them) and are quoted in the text part.
 */
export interface HaltSignals {
  /** The signal that crossed its threshold. */
  kind: HaltingSignal;
  /** The wave the send is in, worded: "the seed wave", "the canary wave", "the wait after the canary", "the rest, continued since the halt". */
  wave: string;
  /** Wave sizes (recipients). */
  seed: number;
  canary: number;
  rest: number;
  /** Whether the rest has started (a continue came before this mail). */
  restStarted: boolean;
  /** The seed cohort and the canary: the base of the bounce and failure percentages. */
  early: number;
  /** Each count against its threshold; `halted`: the one that halted the send. */
  replies: { count: number; threshold: number; halted: boolean };
  reports: { count: number; threshold: number; halted: boolean };
  bounces: { count: number; percent: number; halted: boolean };
  failures: { count: number; percent: number; halted: boolean };
  /** Automatic replies (out of office…): kept, never counted. */
  autoReplies: number;
  /** Evidence, oldest first, at most HALT_EVIDENCE_SHOWN (workers/notify.ts) of each kind; `more`: how many of that kind are not listed. */
  replyEvidence: { list: Array<{ at: string; from: string; excerpt: string }>; more: number };
  reportEvidence: { list: Array<{ at: string; note: string }>; more: number };
  bounceEvidence: { list: Array<{ at: string; recipient: string; status: string; diagnostic: string }>; more: number };
  failureEvidence: { list: Array<{ at: string; recipient: string; reply: string }>; more: number };
  /** Recipients who received it (or were being handed it): a recall's correction goes to them, and only to them. */
  delivered: number;
}

export interface ScheduledData extends Base {
  /** "14:05 UTC" */
  releaseTime: string;
  /** "22 November 2026, 14:05 UTC" */
  releaseAt: string;
  /** Whole minutes from now until release, at least 0. */
  inMinutes: number;
  approvedBy: string[];
  recallUrl: string;
}

export interface RecalledData extends Base {
  recalledBy: string;
  reason: string;
  correctionText: string | null;
  /** Recipients who had received the original (or were being handed it) at the recall. */
  delivered: number;
  /** Recipients who will never get it. */
  skipped: number;
  /** true when nobody received it (recalled during the hold or before the first transaction). */
  nothingSent: boolean;
}

export interface CorrectedData extends Base {
  recalledBy: string;
  reason: string;
  delivered: number;
  corrected: number;
  correctionFailed: number;
}

export interface RejectedData extends Base {
  rejectedBy: string;
  reason: string;
}

export interface ExpiredData extends Base {
  expiredAt: string;
  approvalsRequired: number;
  approvalsGiven: number;
}

export interface NotificationDataByKind {
  approval_request: ApprovalRequestData;
  reminder: ApprovalRequestData;
  scheduled: ScheduledData;
  recalled: RecalledData;
  corrected: CorrectedData;
  rejected: RejectedData;
  expired: ExpiredData;
  correction_request: CorrectionRequestData;
  halted: HaltedData;
}

// ---- Link pages -------------------------------------------------------------------------------

export type LinkAction = "approve" | "reject" | "recall" | "approveCorrection" | "rejectCorrection";

/** GET /links/:token — says what the action is and asks for it; changes nothing. */
export interface ConfirmPageData {
  action: LinkAction;
  /** The path the form POSTs to (the same /links/:token). */
  formAction: string;
  holderName: string;
  message: MessageSummary;
  /** Current state, e.g. "pending_approval", and a human wording of it. */
  state: string;
  stateLabel: string;
  approvalsRequired: number;
  approvalsGiven: number;
  /** Scheduled release, formatted, when known. */
  releaseAt: string | null;
  /** For recall: how many people received the original so far (they get the correction). */
  delivered: number;
  /**
   * What the action is about, exactly as it goes out: the message (approve, reject, recall) or
   * the correction with the proposed text (approveCorrection, rejectCorrection). Its digest is
   * what an approval through the form names.
   */
  mail: SentMail;
  /** Where the page's frame loads the HTML part from (a read-only view of the same build). */
  htmlPreviewUrl: string;
  /** The stored digest of what was submitted (or proposed), when the build now differs from it: it cannot be approved. */
  submittedDigest: string | null;
  /** Recipients by domain of each named audience; empty when there is none, or none recorded. */
  domains: AudienceDomains[];
  /** For the correction actions: who recalled it and why. */
  recall: { by: string; reason: string } | null;
  /** Values to put back into the form after a validation error, and the errors by field name. */
  values: { comment: string; reason: string; correctionText: string };
  errors: { reason?: string; comment?: string; correctionText?: string } | null;
}

/** After the POST, or any refusal: one clear sentence and what to do next. */
export interface ResultPageData {
  /** success: done; info: nothing to do (already done); warning: refused. */
  tone: "success" | "info" | "warning";
  heading: string;
  detail: string;
  message: MessageSummary | null;
  dashboardUrl: string;
}
