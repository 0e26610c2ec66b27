/**
 * The approver's review page, /messages/:id/review: what an approval names, shown as it goes out —
 * both parts built by mail/compose.ts through notify/as-sent.ts (the HTML part in the API preview's
 * sandboxed frame, the text part verbatim), the digest, the sender, the recipients per audience with
 * the version each list froze and by domain, the changes since the previous revision, the approvals
 * so far, the hold and the earliest release — with Approve and Reject (reason) as plain POST forms
 * bound to the revision and digest shown. `?of=correction` (the default while a custom correction
 * text waits for approval) reviews that text: the correction as it would go out, and its digest.
 *
 * Forms are read with the API's schemas and every decision is MessageService's, exactly as through
 * the API. The page adds the check the link pages make: what would go out now still has the digest
 * the page showed (a 409 otherwise, with the way to a fresh review). A decision answers with the
 * message page and a notice; a refused form is the page again, the error at its field, nothing changed.
 */
import { Router, type Request, type Response } from "express";
import { z } from "zod";
import type { User } from "../../auth/users.js";
import { DomainError, isDigestConflict } from "../../domain/errors.js";
import type { Message } from "../../domain/message.js";
import { approveCorrectionInput, approveInput, rejectCorrectionInput, rejectInput } from "../../domain/message-input.js";
import { releaseAt, sameIdentity } from "../../domain/policies.js";
import { asSent, audienceDomains } from "../../notify/as-sent.js";
import { diffRevisions, type RevisionSnapshot } from "../../notify/diff.js";
import { formatDateTime, formatDuration, STATE_LABELS } from "../../notify/format.js";
import { resolutionLine } from "../../notify/resolution.js";
import type { SentMail } from "../../notify/notification-data.js";
import type { DecisionStanding } from "../../service/message-service.js";
import { sessionOf } from "./guards.js";
import { form, one, type DashboardDeps, type PageKit } from "./page-kit.js";
import { formatNumber, reviewPath } from "./view-model.js";

type Of = "original" | "correction";
type Decision = "approve" | "reject";

const ofQuery = z.enum(["original", "correction"]).optional().catch(undefined);

/** Where the message page's notice after a decision comes from (`/messages/:id?done=…`). */
export const DECISIONS_DONE = ["approved", "rejected", "correction-approved", "correction-rejected"] as const;
export type DecisionDone = (typeof DECISIONS_DONE)[number];
const DONE: Record<Of, Record<Decision, DecisionDone>> = {
  original: { approve: "approved", reject: "rejected" },
  correction: { approve: "correction-approved", reject: "correction-rejected" },
};

const COMMENT_MAX = formatNumber(approveInput.shape.comment.unwrap().maxLength ?? 0);
const REASON_MAX = formatNumber(rejectInput.shape.reason.maxLength ?? 0);

/** What happened to a correction text that is no longer waiting, completing "The correction text …". */
const CORRECTION_STATUS: Record<string, string> = {
  standard: "was replaced by the standard correction",
  pending: "is waiting for a decision",
  approved: "was approved and goes out",
  declined: "was rejected; the standard correction goes instead",
};

interface FormState {
  values: { comment: string; reason: string };
  errors: { comment?: string; reason?: string };
}

const blank = (): FormState => ({ values: { comment: "", reason: "" }, errors: {} });

export function reviewRoutes(d: DashboardDeps, k: PageKit): Router {
  const r = Router();
  const userOf = (req: Request): User => sessionOf(req)!.user;

  r.get("/messages/:id/review", k.signedIn, async (req, res) => {
    const m = await k.messageOr404(req);
    await show(req, res, 200, m, reviewOf(req, m), blank());
  });

  for (const of of ["original", "correction"] as const) {
    for (const decision of ["approve", "reject"] as const) {
      r.post(`/messages/:id/review${of === "correction" ? "/correction" : ""}/${decision}`, form, k.signedIn, k.csrf, (req, res) => decide(req, res, of, decision));
    }
  }

  return r;

  /** `?of=`, else the correction text while one waits for approval, else the message. */
  function reviewOf(req: Request, m: Message): Of {
    const of = ofQuery.parse(one(req.query.of)) ?? (m.correction?.status === "pending" ? "correction" : "original");
    if (of === "correction" && !m.correction) throw new DomainError("not_found", "This message was not recalled: it has no correction to review.");
    return of;
  }

  async function decide(req: Request, res: Response, of: Of, decision: Decision): Promise<void> {
    const m = await k.messageOr404(req);
    if (of === "correction" && !m.correction) throw new DomainError("not_found", "This message was not recalled: it has no correction to review.");
    const user = userOf(req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const values = { comment: one(body.comment) ?? "", reason: one(body.reason) ?? "" };
    const shown = { revision: one(body.revision) ?? "", digest: one(body.digest) ?? "" };

    // Whose decision it is, by the rules the service applies (it checks them again when it acts).
    const standing = d.service.decisionStanding(user, m, of);
    if (standing === "not_approver" || standing === "own_message" || standing === "own_correction") {
      return k.refusePage(req, res, 403, "Not allowed", `${whyNoButtons(standing, m, of, user)} Nothing was recorded.`, { href: `/messages/${m.id}`, label: "Open the message page" });
    }
    if (standing === "closed") return nothingToDecide(req, res, m, of);
    if (standing === "approved" && decision === "approve") return alreadyApproved(req, res, m, of);

    // The form, read with the API's schema; a field's error is shown at the field, nothing changed.
    const parsed = readForm(of, decision, values, shown);
    if (parsed === "unreadable") return k.refusePage(req, res, 400, "The form could not be read", "Open the review page again and use its buttons. Nothing was recorded.", { href: reviewPath(m.id, of), label: "Open the review page" });
    if ("errors" in parsed) return show(req, res, 400, m, of, { values, errors: parsed.errors });

    // What the page showed is what would go out now: the same revision, the same digest.
    if (of === "original" && parsed.revision !== m.revision) return changed(req, res, m, of, shown);
    const now = await build(m, of);
    if (!("mail" in now) || now.mail.digest !== shown.digest) return changed(req, res, m, of, shown);

    try {
      if (of === "original" && decision === "approve") await d.service.approve(user, m.id, { revision: parsed.revision, digest: shown.digest, comment: parsed.comment });
      else if (of === "original") await d.service.reject(user, m.id, { reason: parsed.reason, revision: parsed.revision });
      else if (decision === "approve") await d.service.approveCorrection(user, m.id, { digest: shown.digest, comment: parsed.comment });
      else await d.service.rejectCorrection(user, m.id, { reason: parsed.reason });
    } catch (e) {
      return refusedBy(req, res, e, m, of, shown);
    }
    res.redirect(303, `/messages/${m.id}?done=${DONE[of][decision]}`);
  }

  /** The service refused (someone else was faster, the author edited meanwhile…): a page saying so. */
  async function refusedBy(req: Request, res: Response, e: unknown, m: Message, of: Of, shown: { revision: string; digest: string }): Promise<void> {
    if (!(e instanceof DomainError)) throw e;
    const fresh = await d.service.get(userOf(req), m.id).catch(() => m);
    if (e.code === "stale_revision" || isDigestConflict(e)) return changed(req, res, fresh, of, shown);
    if (e.code === "already_approved") return alreadyApproved(req, res, fresh, of);
    if (e.code === "conflict") return nothingToDecide(req, res, fresh, of);
    if (e.code === "self_approval" || e.code === "forbidden") return k.refusePage(req, res, 403, "Not allowed", `${e.message.charAt(0).toUpperCase()}${e.message.slice(1)}. Nothing was recorded.`);
    throw e;
  }

  async function changed(req: Request, res: Response, m: Message, of: Of, shown: { revision: string; digest: string }): Promise<void> {
    const now = await build(m, of);
    const was = `${of === "original" && shown.revision ? `revision ${shown.revision}, ` : ""}digest ${shown.digest || "none"}`;
    const is = `${of === "original" ? `revision ${m.revision}, ` : ""}${"mail" in now ? `digest ${now.mail.digest}` : "no digest: it cannot be built"}`;
    k.refusePage(req, res, 409, `Not done: the ${of === "original" ? "message" : "correction"} changed since you opened this page`, `You reviewed ${was}; what would go out now is ${is}. Nothing was recorded: review it again as it is now.`, {
      href: reviewPath(m.id, of),
      label: "Review it as it is now",
    });
  }

  function nothingToDecide(req: Request, res: Response, m: Message, of: Of): void {
    const detail =
      of === "original"
        ? `This message is ${STATE_LABELS[m.state] ?? m.state}: there is nothing left to approve or reject. Nothing was recorded.`
        : `The correction text ${CORRECTION_STATUS[m.correction?.status ?? ""] ?? "is no longer waiting for a decision"}. Nothing was recorded.`;
    k.refusePage(req, res, 409, "Not done: there is nothing to decide any more", detail, { href: `/messages/${m.id}`, label: "Open the message page" });
  }

  function alreadyApproved(req: Request, res: Response, m: Message, of: Of): void {
    const what = of === "original" ? `revision ${m.revision}` : "this correction text";
    k.refusePage(req, res, 409, `You already approved ${what}`, "An approval is recorded once. Nothing was changed.", { href: `/messages/${m.id}`, label: "Open the message page" });
  }

  /** The page: the mail as it goes out and what the approver decides on, with the forms they may use. */
  async function show(req: Request, res: Response, status: number, m: Message, of: Of, f: FormState): Promise<void> {
    const user = userOf(req);
    const built = await build(m, of);
    const mail = "mail" in built ? built.mail : null;
    const standing = d.service.decisionStanding(user, m, of);
    // What was submitted (or proposed at the recall) no longer builds the same: it cannot be approved.
    const stored = of === "original" ? m.digest : (m.correction?.digest ?? "");
    const mismatch = mail !== null && stored !== "" && stored !== mail.digest;
    const decides = mail !== null && (standing === "open" || standing === "approved");
    const action = `/messages/${m.id}/review${of === "correction" ? "/correction" : ""}`;
    const isCorrection = of === "correction";
    k.page(res, status, "review", k.frame(req, `Review ${isCorrection ? "the correction of " : ""}${m.subject}`, "none"), {
      m: { id: m.id, subject: m.subject, revision: m.revision, author: m.author, state: m.state, stateLabel: STATE_LABELS[m.state] ?? m.state },
      isCorrection,
      mail,
      buildError: "error" in built ? built.error : null,
      mismatch: mismatch ? { stored, now: mail!.digest } : null,
      htmlUrl: `/api/messages/${m.id}/preview?part=html${isCorrection ? "&of=correction" : ""}`,
      details: isCorrection ? correctionDetails(m) : await originalDetails(m, mail),
      otherReview: isCorrection
        ? { href: `/messages/${m.id}/review?of=original`, label: "The message as it was sent" }
        : m.correction?.status === "pending"
          ? { href: reviewPath(m.id, "correction"), label: "The correction text waiting for approval" }
          : null,
      why: whyNoButtons(standing, m, of, user),
      canApprove: decides && standing === "open" && !mismatch,
      canReject: decides,
      approveAction: `${action}/approve`,
      rejectAction: `${action}/reject`,
      approveLabel: isCorrection ? "Approve the correction text" : `Approve revision ${m.revision}`,
      rejectLabel: isCorrection ? "Reject the text" : `Reject revision ${m.revision}`,
      values: f.values,
      errors: f.errors,
      errorCount: Object.keys(f.errors).length,
      commentMax: COMMENT_MAX,
      reasonMax: REASON_MAX,
    });
  }

  async function originalDetails(m: Message, mail: SentMail | null) {
    const [cur, prev, catalogue] = await Promise.all([
      d.store.revisionSnapshot(m.id, m.revision),
      m.revision > 1 ? d.store.revisionSnapshot(m.id, m.revision - 1) : Promise.resolve(null),
      d.audiences.list(),
    ]);
    const frozen = frozenLists(cur, m);
    const byDomain = new Map((await audienceDomains((name) => d.audiences.domains(name), frozen)).map((a) => [a.name, a]));
    const current = new Map(catalogue.map((a) => [a.name, a.version]));
    const now = d.clock.now();
    const missing = Math.max(0, m.requiredApprovals - m.approvals.length);
    const sendAtMs = m.sendAt ? Date.parse(m.sendAt) : null;
    return {
      recipientCount: m.recipientCount,
      audiences: frozen.map((a) => {
        const nowVersion = current.get(a.name);
        const domains = byDomain.get(a.name);
        return {
          name: a.name,
          count: a.count,
          version: a.version,
          resolution: a.resolution,
          // The list since: deleted, or uploaded again (its domains below are of the version it is now).
          since: nowVersion === undefined ? "deleted since" : a.version !== null && nowVersion !== a.version ? `now at version ${nowVersion}` : null,
          domains: domains?.domains ?? [],
          domainsOfNow: domains !== undefined && (domains.changedSinceSubmit || (a.version !== null && nowVersion !== a.version)),
        };
      }),
      explicit: explicitDomains(m.audience.addresses),
      hold: formatDuration(m.holdSeconds),
      sendAt: sendAtMs === null ? null : formatDateTime(sendAtMs),
      release: m.releaseAt
        ? `${formatDateTime(Date.parse(m.releaseAt))} (scheduled)`
        : m.state !== "pending_approval"
          ? null
          : missing <= 1
            ? `${formatDateTime(releaseAt(now, m.holdSeconds, sendAtMs))} (if the last approval is given now)`
            : `once ${missing} more approvals are given, then the hold`,
      expiresAt: m.state === "pending_approval" && m.expiresAt ? formatDateTime(Date.parse(m.expiresAt)) : null,
      approvalsRequired: m.requiredApprovals,
      approvals: m.approvals.map((a) => ({ by: a.by, at: formatDateTime(Date.parse(a.at)), comment: a.comment || null, digest: a.digest, differs: a.digest !== null && mail !== null && a.digest !== mail.digest })),
      previousRevision: m.revision - 1,
      // Nothing to compare for the first revision (or a snapshot missing); [] when nothing visible changed.
      compared: prev !== null && cur !== null,
      diff: prev && cur ? diffRevisions(prev as unknown as RevisionSnapshot, cur as unknown as RevisionSnapshot) : [],
    };
  }

  function correctionDetails(m: Message) {
    const c = m.correction!;
    return {
      recall: m.recall ? { by: m.recall.by, at: formatDateTime(Date.parse(m.recall.at)), reason: m.recall.reason } : null,
      // Everyone handed the original so far (sent, or in a transaction now) gets the correction.
      delivered: m.counts.sent + m.counts.inFlight,
      status: CORRECTION_STATUS[c.status] ?? c.status,
      approvalsRequired: c.required,
      approvals: c.approvals.map((a) => ({ by: a.by, at: formatDateTime(Date.parse(a.at)), comment: a.comment || null, digest: a.digest, differs: false })),
    };
  }

  /** The message or its correction as it goes out, or why it cannot be built (the fan-out would halt on it too). */
  async function build(m: Message, of: Of): Promise<{ mail: SentMail } | { error: string }> {
    try {
      const date = new Date(d.clock.now());
      return { mail: await asSent(d.renderer, m, of, date) };
    } catch (e) {
      return { error: (e as Error).message };
    }
  }
}

/** A decision's form as the API's schema parsed it (the revision is the message's only). */
interface Parsed {
  revision: number;
  comment: string;
  reason: string;
}

/** The form read with the API's schema for this decision: its input, the errors by field, or unreadable (not the page's form). */
function readForm(
  of: Of,
  decision: Decision,
  values: FormState["values"],
  shown: { revision: string; digest: string },
): Parsed | { errors: FormState["errors"] } | "unreadable" {
  // The page's hidden fields: an approval names what it approves, a rejection what it refuses.
  if (!shown.digest) return "unreadable";
  const revision = /^[1-9][0-9]{0,15}$/.test(shown.revision) ? Number(shown.revision) : NaN;
  const comment = values.comment.trim();
  const p =
    of === "original"
      ? decision === "approve"
        ? approveInput.safeParse({ revision, digest: shown.digest, ...(comment ? { comment } : {}) })
        : rejectInput.safeParse({ reason: values.reason, revision })
      : decision === "approve"
        ? approveCorrectionInput.safeParse({ digest: shown.digest, ...(comment ? { comment } : {}) })
        : rejectCorrectionInput.safeParse({ reason: values.reason });
  if (p.success) {
    const data = p.data as { revision?: number; comment?: string; reason?: string };
    return { revision: data.revision ?? 0, comment: data.comment ?? "", reason: data.reason ?? "" };
  }
  const errors: FormState["errors"] = {};
  for (const issue of p.error.issues) {
    const field = issue.path[0];
    if (field === "comment") errors.comment = `The comment may have at most ${COMMENT_MAX} characters.`;
    else if (field === "reason") {
      errors.reason =
        issue.code === "too_small"
          ? of === "original"
            ? "Say why you reject it: the author is told, with your reason, and may edit and resubmit."
            : "Say why you reject the text: your reason is kept in the audit trail, and the standard correction goes instead."
          : `The reason may have at most ${REASON_MAX} characters.`;
    } else return "unreadable";
  }
  return { errors };
}

/** Why the page shows no Approve button (or none at all) to this user; null when both are theirs. */
function whyNoButtons(standing: DecisionStanding, m: Message, of: Of, user: User): string | null {
  switch (standing) {
    case "open":
      return null;
    case "approved": {
      const mine = (of === "original" ? m.approvals : (m.correction?.approvals ?? [])).find((a) => sameIdentity(a.by, user.email));
      const when = mine ? ` on ${formatDateTime(Date.parse(mine.at))}` : "";
      return of === "original"
        ? `You approved revision ${m.revision}${when}: an approval counts once. You may still reject it.`
        : `You approved this correction text${when}: an approval counts once. You may still reject it.`;
    }
    case "not_approver":
      return "Approving and rejecting are for the approver role: you can read everything here.";
    case "own_message":
      return "You wrote this message, so there are no buttons here: nobody approves or rejects their own message. Another approver decides; you are told when they do.";
    case "own_correction":
      return "You recalled this message and wrote its correction text, so there are no buttons here: someone else decides on it.";
    case "closed":
      return of === "original"
        ? `This message is ${STATE_LABELS[m.state] ?? m.state}: there is nothing left to approve or reject.`
        : `The correction text ${CORRECTION_STATUS[m.correction?.status ?? ""] ?? "is no longer waiting"}: there is nothing left to decide.`;
  }
}

/** Each list with its size and version as the revision froze them (a snapshot from before versions: null). */
function frozenLists(snap: Record<string, unknown> | null, m: Message): Array<{ name: string; count: number; version: number | null; resolution: string | null }> {
  // Lua's cjson writes an empty list as {}: anything but an array means "no lists".
  const counts = Array.isArray(snap?.audienceCounts) ? (snap.audienceCounts as Array<{ name?: unknown; count?: unknown; version?: unknown; directory?: unknown }>) : [];
  if (counts.length === 0) return m.audience.lists.map((name) => ({ name, count: 0, version: null, resolution: null }));
  return counts.map((c) => ({
    name: String(c.name),
    count: Number(c.count) || 0,
    version: typeof c.version === "number" ? c.version : null,
    resolution: resolutionLine(c.directory, Number(c.count) || 0),
  }));
}

/** The explicit addresses, counted by domain, most first. */
function explicitDomains(addresses: readonly string[]): { count: number; domains: Array<{ domain: string; count: number }> } | null {
  if (addresses.length === 0) return null;
  const counts = new Map<string, number>();
  for (const a of addresses) {
    const domain = a.slice(a.lastIndexOf("@") + 1).toLowerCase();
    counts.set(domain, (counts.get(domain) ?? 0) + 1);
  }
  const domains = [...counts].map(([domain, count]) => ({ domain, count })).sort((a, b) => b.count - a.count || (a.domain < b.domain ? -1 : 1));
  return { count: addresses.length, domains };
}

/** The message page's notice after a decision made on the review page. */
export function decisionNotice(done: DecisionDone, m: Message): string {
  switch (done) {
    case "approved":
      if (m.state === "scheduled" && m.releaseAt) return `Approved. It is scheduled: it goes out at ${formatDateTime(Date.parse(m.releaseAt))} to ${formatNumber(m.recipientCount)} recipients, after the hold. It can still be recalled until then.`;
      if (m.state === "pending_approval") {
        const missing = Math.max(0, m.requiredApprovals - m.approvals.length);
        return `Your approval is recorded (${m.approvals.length} of ${m.requiredApprovals}). It needs ${missing} more before it is scheduled.`;
      }
      return `Your approval is recorded. The message is ${STATE_LABELS[m.state] ?? m.state} now.`;
    case "rejected":
      return "Rejected. Nothing will be sent; the author has been told, with your reason, and may edit and resubmit it.";
    case "correction-approved": {
      const c = m.correction;
      if (c?.status === "approved") return `Correction text approved: the correction goes to the ${formatNumber(m.counts.sent)} people who received the message.`;
      return `Your approval of the correction text is recorded (${c?.approvals.length ?? 0} of ${c?.required ?? 0}). It needs ${Math.max(0, (c?.required ?? 0) - (c?.approvals.length ?? 0))} more before it goes out.`;
    }
    case "correction-rejected":
      return "Correction text rejected: the standard correction (the message was sent in error) goes out instead. Your reason is in the audit trail.";
  }
}
