/** Pure policy decisions: approvals required, release time, hold bounds, sender rights. No I/O. */
import { parseMailbox, type Mailbox } from "./sender.js";

export interface ApprovalPolicy {
  approvalsRequired: number;
  largeAudienceThreshold: number;
  largeAudienceApprovals: number;
}

/**
 * The approvals a message needs, as rungs `[minRecipients, approvals]` in ascending order: the last
 * rung its recipient count reaches applies. A ladder rather than a function because the count is
 * known only inside the submit script (the freeze): the script looks the rung up, the policy is here.
 */
export type ApprovalLadder = ReadonlyArray<readonly [minRecipients: number, approvals: number]>;

export function approvalLadder(p: ApprovalPolicy): ApprovalLadder {
  return [
    [0, p.approvalsRequired],
    [p.largeAudienceThreshold, Math.max(p.largeAudienceApprovals, p.approvalsRequired)],
  ];
}

export function requiredApprovals(recipientCount: number, p: ApprovalPolicy): number {
  let required = 0;
  for (const [min, approvals] of approvalLadder(p)) if (recipientCount >= min) required = approvals;
  return required;
}

/** The hold may be made longer per message, never shorter than the configured minimum. */
export function effectiveHoldSeconds(requestedMinutes: number | undefined, minSeconds: number): number {
  if (requestedMinutes === undefined) return minSeconds;
  return Math.max(minSeconds, Math.round(requestedMinutes * 60));
}

/** releaseAt = max(approvedAt + hold, sendAt), all in epoch milliseconds. */
export function releaseAt(approvedAtMs: number, holdSeconds: number, sendAtMs: number | null): number {
  return Math.max(approvedAtMs + holdSeconds * 1000, sendAtMs ?? 0);
}

export interface Approval {
  by: string;
  at: number;
  comment?: string;
}

export type ApprovalRefusal = "self_approval" | "already_approved";

/**
 * Whether two users are one person: "someone other than" compares identities. A user's identity is
 * their email address today, compared without regard to case (addresses are case-insensitive in
 * practice, and `A@corp` must not approve `a@corp`'s message).
 */
export function sameIdentity(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}

/** Four eyes: nobody approves their own message, and each approver counts once. */
export function approvalRefusal(author: string, approver: string, approvals: ReadonlyArray<{ by: string }>): ApprovalRefusal | null {
  if (sameIdentity(author, approver)) return "self_approval";
  if (approvals.some((a) => sameIdentity(a.by, approver))) return "already_approved";
  return null;
}

/**
 * What one more approval does: with it, the quorum is reached and the message is scheduled for
 * `releaseAt`; else it stays pending.
 */
export function approvalOutcome(
  m: { approvalsGiven: number; requiredApprovals: number; holdSeconds: number; sendAtMs: number | null },
  approvedAtMs: number,
): { to: "scheduled"; releaseAt: number } | { to: "pending_approval"; releaseAt: null } {
  if (m.approvalsGiven + 1 < m.requiredApprovals) return { to: "pending_approval", releaseAt: null };
  return { to: "scheduled", releaseAt: releaseAt(approvedAtMs, m.holdSeconds, m.sendAtMs) };
}

/** The sender mailboxes a user may choose from: MAIL_FROM first (the default), then their own. */
export function senderMailboxes(mailFrom: string, userSenders: readonly Mailbox[]): Mailbox[] {
  const configured = parseMailbox(mailFrom);
  if (!configured.ok) throw new Error(`MAIL_FROM: ${configured.reason}`); // checked at start (config.ts)
  return [configured.mailbox, ...userSenders.filter((m) => m.address !== configured.mailbox.address)];
}


