/**
 * A reference model of a message's lifecycle, written from SPEC.md ("People and roles",
 * "Lifecycle", "Policies", the HTTP API table) as a second opinion: it imports nothing from src/.
 * Pure functions over plain data, no I/O.
 *
 * For each command it predicts the HTTP status and, on success, the message right after it. Where
 * Airlock itself moves a message on (the release at `releaseAt`, the end of a fan-out, the end of a
 * correction), the model does not guess when: `systemMoves` says which moves are allowed at a given
 * moment, and a test accepts an observed state that those moves reach (and only those).
 *
 * Where the spec lets several refusals apply at once (say, a self-approval of a message that is no
 * longer pending: 403 and 409), it does not order them: the model answers every status that applies,
 * and the real answer must be one of them.
 */

export type Role = "author" | "approver" | "ops" | "admin";

export type ModelState =
  | "draft"
  | "pending_approval"
  | "scheduled"
  | "sending"
  | "sent"
  | "recalled"
  | "correcting"
  | "corrected"
  | "rejected"
  | "withdrawn"
  | "expired"
  /** Discarded draft: gone for everyone (404). */
  | "discarded";

export interface Person {
  email: string;
  roles: readonly Role[];
}

export interface Policy {
  holdMs: number;
  approvalsRequired: number;
  largeAudience: number;
  largeAudienceApprovals: number;
  /** Approvals a custom correction text needs (CORRECTION_APPROVALS). */
  correctionApprovals: number;
  approvalTtlMs: number;
}

export interface ModelCorrection {
  /** standard: the fixed notice goes; pending: a custom text waits for approval; approved: the text goes; declined: rejected, the standard notice goes. */
  status: "standard" | "pending" | "approved" | "declined";
  /** Who recalled (and so wrote the text). */
  by: string;
  approvals: string[];
  custom: boolean;
}

export interface ModelMessage {
  id: string;
  author: string;
  state: ModelState;
  revision: number;
  /** Who approved the current revision (emails, in order). */
  approvals: string[];
  /** Approvals this revision needs (not meaningful for a draft: nothing is frozen yet). */
  required: number;
  /** The recipient count of the current revision (frozen at submission). */
  recipients: number;
  subject: string;
  /** When it was submitted (the approval TTL counts from there). */
  submittedAt?: number;
  /** Set when the approvals became complete: what may go out, and not before when. */
  approved?: { revision: number; subject: string; by: string[]; notBefore: number };
  recall?: { by: string; delivered: number };
  correction?: ModelCorrection;
}

export type Command =
  | { kind: "create"; draft: boolean; recipients: number; subject: string }
  | { kind: "submit" }
  | { kind: "discard" }
  | { kind: "edit"; recipients: number; subject: string }
  | { kind: "approve"; revision: number }
  | { kind: "reject" }
  | { kind: "withdraw" }
  | { kind: "recall"; correctionText: boolean }
  | { kind: "approveCorrection" }
  | { kind: "rejectCorrection" }
  | { kind: "standardCorrection" };

/** One acceptable answer: a status (any of `statuses`), and on success the message right after. */
export interface Expected {
  statuses: number[];
  why: string;
  after?: ModelMessage;
  /** A recall's `delivered` count: exactly this, or a range (a recall during the fan-out). */
  delivered?: { min: number; max: number };
}

const has = (p: Person, ...roles: Role[]) => roles.some((r) => p.roles.includes(r));
const same = (a: string, b: string) => a.trim().toLowerCase() === b.trim().toLowerCase();

/** Writes messages (SPEC roles: author; admin is "everything above"). */
export const mayWrite = (p: Person) => has(p, "author", "admin");
/** Approves or rejects others' messages and correction texts. */
export const mayDecide = (p: Person) => has(p, "approver", "admin");
/** Recalls any message; an author recalls their own. */
export const mayRecall = (p: Person, m: ModelMessage) => has(p, "approver", "ops", "admin") || (has(p, "author") && same(p.email, m.author));
/** Every role reads every message, but a draft is its author's (and ops', admins'); a discarded draft is nobody's. */
export const maySee = (p: Person, m: ModelMessage) => m.state !== "discarded" && (m.state !== "draft" || same(p.email, m.author) || has(p, "ops", "admin"));

export function requiredApprovals(recipients: number, policy: Policy): number {
  return recipients >= policy.largeAudience ? Math.max(policy.largeAudienceApprovals, policy.approvalsRequired) : policy.approvalsRequired;
}

/** Before release: the states from which nothing was ever handed to SMTP. */
export const UNRELEASED: readonly ModelState[] = ["draft", "pending_approval", "scheduled", "rejected", "withdrawn", "expired", "discarded"];

/**
 * The moves Airlock makes by itself from `m` at time `now`, one step: the release (not before the
 * hold has passed since the approval), the end of the fan-out, the end of a correction (not while a
 * custom text waits for approval), the expiry of an approval request (not before its TTL).
 */
export function systemMoves(m: ModelMessage, now: number, policy: Policy): ModelState[] {
  switch (m.state) {
    case "scheduled":
      return m.approved && now >= m.approved.notBefore ? ["sending"] : [];
    case "sending":
      return ["sent"];
    case "correcting":
      return m.correction?.status === "pending" ? [] : ["corrected"];
    case "pending_approval":
      return m.submittedAt !== undefined && now >= m.submittedAt + policy.approvalTtlMs ? ["expired"] : [];
    default:
      return [];
  }
}

/** `m` and every message Airlock's own moves may have made of it by `now`. */
export function reachable(m: ModelMessage, now: number, policy: Policy): ModelMessage[] {
  const out: ModelMessage[] = [m];
  for (let i = 0; i < out.length; i++) for (const s of systemMoves(out[i]!, now, policy)) if (!out.some((o) => o.state === s)) out.push({ ...out[i]!, state: s });
  return out;
}

function refuse(statuses: number[], why: string): Expected {
  return { statuses, why };
}

/**
 * What `who` doing `cmd` to `m` (undefined for a create) must answer, for the message exactly as
 * given. `now` is when the request is sent. Refusals are collected, not ordered (see above).
 */
export function predictOne(m: ModelMessage | undefined, who: Person, cmd: Command, policy: Policy, now: number): Expected {
  if (cmd.kind === "create") {
    if (!mayWrite(who)) return refuse([403], "only an author (or admin) writes messages");
    const required = requiredApprovals(cmd.recipients, policy);
    return {
      statuses: [201],
      why: cmd.draft ? "a draft is saved" : "created and submitted",
      after: {
        id: "",
        author: who.email,
        state: cmd.draft ? "draft" : "pending_approval",
        revision: 1,
        approvals: [],
        required,
        recipients: cmd.recipients,
        subject: cmd.subject,
        ...(cmd.draft ? {} : { submittedAt: now }),
      },
    };
  }
  if (!m) throw new Error("the model needs a message for " + cmd.kind);
  const refusals: Array<[number, string]> = [];
  const no = (status: number, why: string) => refusals.push([status, why]);
  // A message the user may not see is not there for them: a 404, whatever else would apply (any
  // other answer would tell it exists), or the 403 of a role they lack for this action on any message.
  if (!maySee(who, m)) {
    const decides = ["approve", "reject", "approveCorrection", "rejectCorrection"].includes(cmd.kind);
    return refuse(decides && !mayDecide(who) ? [404, 403] : [404], "not visible to this user");
  }
  const own = same(who.email, m.author);
  let after: ModelMessage | undefined;
  let status = 200;
  let delivered: Expected["delivered"];
  const byAuthorOnly = () => {
    if (!own) no(403, "only its author does this");
  };
  switch (cmd.kind) {
    case "submit":
      byAuthorOnly();
      if (m.state !== "draft") no(409, `${m.state} is not a draft`);
      after = { ...m, state: "pending_approval", approvals: [], required: requiredApprovals(m.recipients, policy), submittedAt: now };
      break;
    case "discard":
      byAuthorOnly();
      if (m.state !== "draft") no(409, `${m.state} is not a draft`);
      after = { ...m, state: "discarded" };
      status = 204;
      break;
    case "edit":
      byAuthorOnly();
      if (m.state === "draft") after = { ...m, revision: m.revision + 1, recipients: cmd.recipients, subject: cmd.subject };
      else if (m.state === "pending_approval" || m.state === "rejected") {
        // A new revision, submitted: every approval so far was for the old one.
        after = { ...m, state: "pending_approval", revision: m.revision + 1, approvals: [], recipients: cmd.recipients, required: requiredApprovals(cmd.recipients, policy), subject: cmd.subject, submittedAt: now };
      } else no(409, `${m.state} cannot be edited`);
      break;
    case "approve": {
      if (!mayDecide(who)) no(403, "not an approver");
      if (own) no(403, "nobody approves their own message");
      if (m.approvals.some((a) => same(a, who.email))) no(409, "already approved by this approver");
      if (cmd.revision !== m.revision) no(409, `revision ${cmd.revision} is not the current ${m.revision}`);
      if (m.state !== "pending_approval") no(409, `${m.state} is not pending approval`);
      const approvals = [...m.approvals, who.email];
      if (approvals.length >= m.required) {
        after = { ...m, approvals, state: "scheduled", approved: { revision: m.revision, subject: m.subject, by: approvals, notBefore: now + policy.holdMs } };
      } else after = { ...m, approvals };
      break;
    }
    case "reject":
      if (!mayDecide(who)) no(403, "not an approver");
      if (own) no(403, "nobody decides on their own message");
      if (m.state !== "pending_approval") no(409, `${m.state} is not pending approval`);
      after = { ...m, state: "rejected" };
      break;
    case "withdraw":
      byAuthorOnly();
      if (m.state !== "pending_approval" && m.state !== "scheduled") no(409, `${m.state}: withdraw is before release only`);
      after = { ...m, state: "withdrawn" };
      break;
    case "recall": {
      if (!mayRecall(who, m)) no(403, "authors recall only their own messages");
      const recalled = (d: number): ModelMessage => ({ ...m, state: "recalled", recall: { by: who.email, delivered: d } });
      const correcting = (d: number): ModelMessage => ({
        ...m,
        state: "correcting",
        recall: { by: who.email, delivered: d },
        correction: cmd.correctionText && policy.correctionApprovals > 0
          ? { status: "pending", by: who.email, approvals: [], custom: true }
          : { status: cmd.correctionText ? "approved" : "standard", by: who.email, approvals: [], custom: cmd.correctionText },
      });
      if (m.state === "scheduled") {
        after = recalled(0);
        delivered = { min: 0, max: 0 };
      } else if (m.state === "sent") {
        after = correcting(m.recipients);
        delivered = { min: m.recipients, max: m.recipients };
      } else if (m.state === "sending") {
        // Some were handed it (correcting; how many, the answer says), or nobody yet: predict() adds that outcome.
        after = correcting(1);
        delivered = { min: 1, max: m.recipients };
      } else no(409, `${m.state} cannot be recalled`);
      break;
    }
    case "approveCorrection":
    case "rejectCorrection":
    case "standardCorrection": {
      const c = m.correction;
      if (cmd.kind === "standardCorrection") {
        if (!(c && same(c.by, who.email)) && !has(who, "ops", "admin")) no(403, "only who recalled (or ops, admin) switches to the standard correction");
      } else {
        if (!mayDecide(who)) no(403, "not an approver");
        if (c && same(c.by, who.email)) no(403, "nobody decides on the correction text they wrote");
        if (cmd.kind === "approveCorrection" && c?.approvals.some((a) => same(a, who.email))) no(409, "already approved this correction text");
      }
      if (m.state !== "correcting" || c?.status !== "pending") no(409, "no correction text awaits approval");
      if (c) {
        if (cmd.kind === "approveCorrection") {
          const approvals = [...c.approvals, who.email];
          after = { ...m, correction: { ...c, approvals, status: approvals.length >= policy.correctionApprovals ? "approved" : "pending" } };
        } else after = { ...m, correction: { ...c, status: cmd.kind === "rejectCorrection" ? "declined" : "standard" } };
      }
      break;
    }
  }
  if (refusals.length > 0) return refuse([...new Set(refusals.map(([s]) => s))], refusals.map(([, w]) => w).join("; "));
  return { statuses: [status], why: "allowed", after, delivered };
}

/**
 * Every acceptable answer to `cmd` sent at `now` to a message last seen as `m`: Airlock may have
 * moved it on by itself in between (a release, the end of a fan-out), so each state it may have
 * reached is a possible starting point. A recall during the fan-out has two outcomes, decided by
 * whether anyone had been handed the message (SPEC: `recalled` "Not one recipient received it").
 */
export function predict(m: ModelMessage | undefined, who: Person, cmd: Command, policy: Policy, now: number): Expected[] {
  if (!m) return [predictOne(undefined, who, cmd, policy, now)];
  const out: Expected[] = [];
  for (const start of reachable(m, now, policy)) {
    const e = predictOne(start, who, cmd, policy, now);
    if (cmd.kind === "recall" && start.state === "sending" && e.after) {
      out.push({ ...e, after: { ...e.after, state: "recalled", correction: undefined, recall: { by: who.email, delivered: 0 } }, delivered: { min: 0, max: 0 } });
    }
    out.push(e);
  }
  return out;
}

/** A message as the API shows it, reduced to what the model speaks of. */
export interface Observed {
  state: string;
  revision: number;
  author: string;
  approvals: string[];
  requiredApprovals: number;
  recipientCount: number;
  subject: string;
  releaseAt: number | null;
  recallBy: string | null;
  correction: { status: string; approvals: string[] } | null;
}

/** Where the observed message and the model disagree (empty: they agree). The state is compared by the caller. */
export function differences(m: ModelMessage, o: Observed): string[] {
  const d: string[] = [];
  const eq = (what: string, model: unknown, real: unknown) => {
    if (JSON.stringify(model) !== JSON.stringify(real)) d.push(`${what}: model ${JSON.stringify(model)}, real ${JSON.stringify(real)}`);
  };
  eq("state", m.state, o.state);
  eq("revision", m.revision, o.revision);
  eq("author", m.author.toLowerCase(), o.author.toLowerCase());
  eq("approvals", [...m.approvals].map((a) => a.toLowerCase()).sort(), [...o.approvals].map((a) => a.toLowerCase()).sort());
  eq("subject", m.subject, o.subject);
  if (m.state !== "draft") {
    // A draft freezes nothing: its count and approvals needed are decided at its submission.
    eq("recipientCount", m.recipients, o.recipientCount);
    eq("requiredApprovals", m.required, o.requiredApprovals);
  }
  if (m.approved && !UNRELEASED.includes(m.state) && o.releaseAt !== null && o.releaseAt < m.approved.notBefore) {
    d.push(`releaseAt ${new Date(o.releaseAt).toISOString()} is before the hold ends (${new Date(m.approved.notBefore).toISOString()})`);
  }
  if (m.recall) eq("recall.by", m.recall.by.toLowerCase(), o.recallBy?.toLowerCase() ?? null);
  if (m.correction && (m.state === "correcting" || m.state === "corrected")) {
    eq("correction.status", m.correction.status, o.correction?.status ?? null);
    eq("correction.approvals", [...m.correction.approvals].sort(), [...(o.correction?.approvals ?? [])].sort());
  }
  return d;
}
