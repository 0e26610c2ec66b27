/** Pure policy decisions: approvals required, release time, hold bounds, sender rights. No I/O. */

export interface ApprovalPolicy {
  approvalsRequired: number;
  largeAudienceThreshold: number;
  largeAudienceApprovals: number;
}

export function requiredApprovals(recipientCount: number, p: ApprovalPolicy): number {
  return recipientCount >= p.largeAudienceThreshold ? Math.max(p.largeAudienceApprovals, p.approvalsRequired) : p.approvalsRequired;
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

/** Four eyes: nobody approves their own message, and each approver counts once. */
export function approvalRefusal(author: string, approver: string, approvals: readonly Approval[]): ApprovalRefusal | null {
  if (sameAddress(author, approver)) return "self_approval";
  if (approvals.some((a) => sameAddress(a.by, approver))) return "already_approved";
  return null;
}

export function allowedSenders(mailFrom: string, userSenders: readonly string[] | undefined): string[] {
  return [mailFrom, ...(userSenders ?? [])].map((s) => extractAddress(s).toLowerCase());
}

/** The sender is MAIL_FROM unless the author's entry lists other addresses; anything else is refused. */
export function senderAllowed(from: string, mailFrom: string, userSenders: readonly string[] | undefined): boolean {
  return allowedSenders(mailFrom, userSenders).includes(extractAddress(from).toLowerCase());
}

/** `Name <a@b>` -> `a@b`; a bare address is returned as is. */
export function extractAddress(from: string): string {
  const m = /<([^<>]+)>\s*$/.exec(from);
  return (m ? m[1]! : from).trim();
}

export function sameAddress(a: string, b: string): boolean {
  return a.trim().toLowerCase() === b.trim().toLowerCase();
}
