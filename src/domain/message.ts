/** The message as the rest of Airlock sees it (and as the API answers it). */
import type { State } from "./lifecycle.js";
import type { Approval } from "./policies.js";

export interface AudienceSpec {
  lists: string[];
  addresses: string[];
}

export interface Recall {
  by: string;
  at: string;
  reason: string;
  correctionText: string | null;
  deliveredAtRecall: number;
}

/** A message without its bodies (text, HTML, Markdown: up to a few MB each): what lists carry. */
export type ListedMessage = Omit<Message, "text" | "html" | "markdown">;

export interface Message {
  id: string;
  revision: number;
  state: State;
  subject: string;
  text: string;
  html: string | null;
  /** The Markdown source when the body was written in Markdown ("" otherwise), and its house template. */
  markdown: string;
  template: string;
  from: string;
  audience: AudienceSpec;
  toHeader: string;
  recipientCount: number;
  author: string;
  /** Each names the revision's digest it approved (null: approved before digests were recorded). */
  approvals: Array<{ by: string; at: string; comment: string | null; digest: string | null }>;
  /** SHA-256 of the exact MIME of this revision, envelope and Date: aside (mail/compose.ts). */
  digest: string;
  requiredApprovals: number;
  holdSeconds: number;
  sendAt: string | null;
  releaseAt: string | null;
  expiresAt: string | null;
  createdAt: string;
  /** When the current revision was submitted (the approval TTL counts from here). */
  submittedAt: string;
  updatedAt: string;
  messageId: string;
  counts: { queued: number; inFlight: number; sent: number; failed: number; skipped: number; corrected: number; correctionFailed: number };
  possibleDuplicates: number;
  recall: Recall | null;
  rejection: { by: string; at: string; reason: string } | null;
  /**
   * Set while ops hold the running fan-out (state `sending` or `correcting`); see store/lua/pause.lua.
   * `by` is AIRLOCK_ACTOR when Airlock halted it itself (what was about to go out was not what was approved).
   */
  paused: { by: string; at: string; reason: string } | null;
  /** After a recall: which correction goes, and the approval of a custom text. */
  correction: Correction | null;
  /** After a recall of a delivered message, with a purge connector configured: its removal from the mailboxes. */
  purge: PurgeProgress | null;
  /** A staged send (SPEC "Staged sends"): its waves and the signals seen so far; null when it goes all at once. */
  waves: WaveProgress | null;
}

/** Which wave a staged send is in: its plan being made at release, one of its waves going, or the wait after the canary. */
export type WavePhase = "approval" | "planning" | "seed" | "canary" | "wait" | "rest";

export interface WaveProgress {
  /** "approval": not released yet (the plan is made at release). */
  phase: WavePhase;
  /** The audience whose members (those among the recipients, at most 100) go first with the author and the approvers; null for none. */
  seedAudience: string | null;
  /** Wave sizes, known once planned (0 before). */
  seed: number;
  canary: number;
  rest: number;
  /** The canary sample's recorded seed (null before the plan): the sample is reproducible from it. */
  canarySeed: string | null;
  /** When each wave started (ISO), once it did. */
  startedAt: { seed: string | null; canary: string | null; rest: string | null };
  /** The end of the wait after the canary (ISO), while phase is "wait". */
  waitUntil: string | null;
  /** Recipients of the waves before the rest handed to SMTP so far (sent or failed). The percentages' base is seed + canary. */
  handed: number;
  signals: { failures: number; bounces: number; replies: number; autoReplies: number; reports: number };
  thresholds: { replies: number; reports: number; bouncePercent: number; failurePercent: number };
  /** Set when a signal over its threshold halted the send (the halt itself is `paused`). */
  haltedBy: { kind: "failure" | "bounce" | "reply" | "report"; at: string; count: number } | null;
}

/**
 * The purge of a recalled original from the mailboxes of those it was `sent` to (`total`): each
 * recipient ends `purged`, `notFound` (after the retries) or `failed`; `pending` are not done yet.
 */
export interface PurgeProgress {
  startedAt: string;
  endedAt: string | null;
  total: number;
  purged: number;
  notFound: number;
  failed: number;
  pending: number;
}

/** One recipient's purge: `pending` until it ends (not found and retryable failures are tried again meanwhile). */
export type PurgeStatus = "pending" | "purged" | "not_found" | "failed";

/**
 * `standard`: the fixed correction template; `pending`: a custom text waits for approval by
 * someone other than the recaller (nobody is corrected meanwhile); `approved`: the custom text goes;
 * `declined`: an approver rejected the text; the standard correction goes instead.
 */
export type CorrectionStatus = "standard" | "pending" | "approved" | "declined";

export interface Correction {
  status: CorrectionStatus;
  /** The custom text proposed at the recall, or null for the standard correction. */
  text: string | null;
  required: number;
  approvals: Array<{ by: string; at: string; comment: string | null; digest: string }>;
  /** SHA-256 of the correction as built with the text (mail/compose.ts). */
  digest: string;
  proposedBy: string;
  rejection: { by: string; at: string; reason: string } | null;
}

/** The actor of what Airlock does by itself, such as a halt of a fan-out whose mail is not what was approved (workers/fanout.ts). */
export const AIRLOCK_ACTOR = "airlock";

export type DeliveryStatus = "queued" | "sent" | "failed" | "skipped";

export interface RecipientState {
  email: string;
  status: DeliveryStatus;
  reply: string | null;
  correction: "sent" | "failed" | "queued" | null;
  /** Inside a transaction of the original cut off at an unknown point: may have received it twice. */
  possibleDuplicate: boolean;
  /** The same, for the correction. */
  correctionPossibleDuplicate: boolean;
  /** Null: not purged (never sent, or no purge). */
  purge: PurgeStatus | null;
  /** Why the last purge attempt failed (kept while it is tried again). */
  purgeReason: string | null;
}

export type { Approval };
