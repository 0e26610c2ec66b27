/**
 * What each notification email and each link page is given to render: plain data, already
 * formatted (dates as text, counts as numbers). The templates in templates/notify/ and
 * templates/pages/ render exactly these shapes; the worker (workers/notify.ts) and the link
 * routes (src/http/routes/links.ts) build them.
 */

export const NOTIFICATION_KINDS = ["approval_request", "reminder", "scheduled", "recalled", "corrected", "rejected", "expired"] as const;
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
  audiences: Array<{ name: string; count: number }>;
  /** Explicit addresses named in the message. */
  explicitCount: number;
  /** Plain-text body, and the author's HTML (untrusted: render only through `sanitizeHtml`). */
  text: string;
  html: string | null;
  /** Link to the message on the dashboard. */
  dashboardUrl: string;
}

/** One changed field between two revisions; unchanged fields are left out. */
export interface FieldDiff {
  /** Human name: "Subject", "Sender", "Text", "HTML", "Audience", "Recipients". */
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
  approveUrl: string;
  rejectUrl: string;
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
}

// ---- Link pages -------------------------------------------------------------------------------

export type LinkAction = "approve" | "reject" | "recall";

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
