/**
 * /links/:token — the links in approvers' and authors' emails.
 *
 * Mail security scanners (Safe Links, Mimecast, Proofpoint, Barracuda) fetch every link of every
 * mail, so GET and HEAD only show a confirmation page: they read, never write. The action happens
 * on the POST that the page's form sends. Every answer is a page; a refusal is a page with a 4xx
 * status that says what happened and that nothing changed. The page shows what the action is about
 * exactly as it goes out (both parts, the digest); its HTML part comes from `/:token/preview`, read
 * only like the page, in a sandboxed frame.
 */
import express, { Router, type Request, type Response } from "express";
import type { UserDirectory } from "../../auth/users.js";
import { ReplicationLagError } from "../../domain/errors.js";
import type { Message } from "../../domain/message.js";
import { sameIdentity } from "../../domain/policies.js";
import type { Inspected, LinkService, Refusal, RefusalCode } from "../../links/link-service.js";
import { audienceDomains } from "../../notify/as-sent.js";
import { formatDateTime, formatTime, STATE_LABELS } from "../../notify/format.js";
import type { ConfirmPageData, LinkAction, MessageSummary, ResultPageData, SentMail } from "../../notify/notification-data.js";
import { dashboardUrl } from "../../notify/summary.js";
import { sessionOf } from "../dashboard/guards.js";
import type { createPageRenderer } from "../pages.js";

export type PageRenderer = ReturnType<typeof createPageRenderer>;

export interface LinkRouteDeps {
  links: LinkService;
  pages: PageRenderer;
  users: UserDirectory;
  publicUrl: string;
  summary(m: Message): Promise<MessageSummary>;
  /** Recipients by domain of an audience's current version (AudienceStore.domains); pages show none without it. */
  domains?(name: string): Promise<Array<{ domain: string; count: number }>>;
}

const REFUSAL_STATUS: Record<RefusalCode, number> = {
  invalid: 404,
  expired: 410,
  used: 410,
  stale_revision: 409,
  closed: 409,
  already: 409,
  wrong_action: 403,
  wrong_user: 403,
  forbidden: 403,
  bad_form: 400,
  changed: 409,
};

const VERB: Record<LinkAction, string> = {
  approve: "approve",
  reject: "reject",
  recall: "recall",
  approveCorrection: "approve the correction text of",
  rejectCorrection: "reject the correction text of",
};

const CORRECTION_ACTIONS: readonly LinkAction[] = ["approveCorrection", "rejectCorrection"];

/**
 * Pages carry no inline script or style: everything comes from /static (see app.ts). The one frame
 * is our own preview of the HTML part.
 */
const PAGE_CSP =
  "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' https: data:; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/** The HTML part in the page's frame: our template's build, with no script, no plugin, no form, no navigation of the page. */
const PREVIEW_CSP = "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; sandbox; frame-ancestors 'self'; base-uri 'none'; form-action 'none'";

export function linkRoutes(d: LinkRouteDeps): Router {
  const r = Router();
  const send = (res: Response, status: number, html: string) => {
    res.status(status).set({ "Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Content-Security-Policy": PAGE_CSP }).type("html").send(html);
  };
  const result = async (res: Response, status: number, page: Omit<ResultPageData, "message" | "dashboardUrl">, m: Message | null) => {
    send(res, status, d.pages.result({ ...page, message: m ? await d.summary(m) : null, dashboardUrl: m ? dashboardUrl(d.publicUrl, m.id) : d.publicUrl + "/" }));
  };
  const refuse = async (res: Response, f: Refusal, signedIn?: string) => result(res, REFUSAL_STATUS[f.code], refusalWording(f, signedIn), f.message);

  /** The confirmation page, or — when what it is about cannot be built any more — a page saying so. */
  const confirm = async (req: Request, res: Response, status: number, i: Inspected, values: ConfirmPageData["values"], errors: ConfirmPageData["errors"]) => {
    let mail: SentMail;
    try {
      mail = await d.links.asSent(i.message, i.grant.action);
    } catch {
      const detail = "What it would send cannot be built as a mail any more, so nobody can approve or send it as it is. Nothing was changed; tell ops.";
      return result(res, 409, { tone: "warning", heading: "This message cannot be built", detail }, i.message);
    }
    send(res, status, d.pages.confirm(await confirmData(d, req, i, mail, values, errors)));
  };

  // Express answers HEAD with this handler too (and drops the body): both only read.
  r.get("/:token", async (req, res) => {
    const i = await d.links.inspect(String(req.params.token));
    if (!i.ok) return refuse(res, i);
    await confirm(req, res, 200, i, { comment: "", reason: "", correctionText: "" }, null);
  });

  // The HTML part for the page's frame: the same build as the page (`digest` names it), read only.
  r.get("/:token/preview", async (req, res) => {
    const plain = (status: number, text: string) => void res.status(status).set({ "Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow" }).type("text/plain").send(text);
    const i = await d.links.inspect(String(req.params.token));
    if (!i.ok) return plain(REFUSAL_STATUS[i.code], "This link no longer shows the message. Open it again from your email.");
    let mail: SentMail;
    try {
      mail = await d.links.asSent(i.message, i.grant.action);
    } catch {
      return plain(409, "The message cannot be built as a mail any more.");
    }
    const shown = typeof req.query.digest === "string" ? req.query.digest : null;
    if (shown !== null && shown !== mail.digest) return plain(409, "The message changed since the page was opened: reload the page.");
    res.set({ "Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Content-Security-Policy": PREVIEW_CSP, "Airlock-Digest": mail.digest }).type("html").send(mail.html);
  });

  r.post("/:token", express.urlencoded({ extended: false, limit: "64kb", parameterLimit: 20 }), async (req, res) => {
    // The form is on our own page: a POST started by another site is refused whatever it carries.
    if (req.headers["sec-fetch-site"] === "cross-site") {
      return result(res, 403, { tone: "warning", heading: "Refused: this request came from another site", detail: "Open the link from your email and confirm on the page it shows. Nothing was changed." }, null);
    }
    if (!req.is("application/x-www-form-urlencoded")) {
      return result(res, 415, { tone: "warning", heading: "Send the confirmation form", detail: "This address accepts only the form on its confirmation page. Nothing was changed." }, null);
    }
    const signedIn = signedInUser(req, d.users);
    const out = await d.links.act(String(req.params.token), req.body ?? {}, signedIn);
    if (out.ok) return result(res, 200, doneWording(out.action, out.message, out.delivered), out.message);
    if (out.code === "invalid_input") {
      const values = { comment: str(req.body?.comment), reason: str(req.body?.reason), correctionText: str(req.body?.correctionText) };
      return confirm(req, res, 400, out.inspected, values, out.errors);
    }
    return refuse(res, out, signedIn?.email);
  });

  // A body the parser refuses (too large, too many fields, a charset it cannot read): a page, not JSON.
  r.use((err: unknown, _req: Request, res: Response, next: express.NextFunction) => {
    // Recorded on the Redis primary, not yet on enough replicas (REDIS_MIN_REPLICAS_ACK): the token was given back.
    if (err instanceof ReplicationLagError) {
      return void result(res, 503, { tone: "warning", heading: "Recorded, not yet confirmed", detail: "Your action reached the database but not yet enough of its replicas. Go back and confirm again in a moment: it will be confirmed, or the page will say it was already done." }, null);
    }
    const status = typeof err === "object" && err !== null && "status" in err && typeof err.status === "number" && err.status >= 400 && err.status < 500 ? err.status : null;
    if (status === null) return next(err);
    void result(res, status, { tone: "warning", heading: "This request could not be read", detail: "Use the form on the link's page. Nothing was changed." }, null);
  });

  return r;
}

const str = (v: unknown) => (typeof v === "string" ? v : "");

/** Who the browser is signed in as: a bearer token, else the dashboard session (loaded in app.ts). */
function signedInUser(req: Request, users: UserDirectory) {
  const m = /^Bearer\s+(\S{1,512})\s*$/i.exec(req.headers.authorization ?? "");
  if (m) return users.byToken(m[1]!);
  return sessionOf(req)?.user ?? null;
}

async function confirmData(
  d: LinkRouteDeps,
  req: Request,
  i: Inspected,
  mail: SentMail,
  values: ConfirmPageData["values"],
  errors: ConfirmPageData["errors"],
): Promise<ConfirmPageData> {
  const { message: m, grant } = i;
  const action = grant.action;
  const correction = CORRECTION_ACTIONS.includes(action);
  const summary = await d.summary(m);
  // What was submitted (or proposed at the recall) no longer builds the same: an approval would be refused.
  const submitted = correction ? (m.correction?.digest ?? "") : m.digest;
  const approves = action === "approve" || action === "approveCorrection";
  return {
    action,
    formAction: req.baseUrl + req.path,
    holderName: i.holder.name,
    message: summary,
    state: m.state,
    stateLabel: STATE_LABELS[m.state] ?? m.state,
    approvalsRequired: correction ? (m.correction?.required ?? 0) : m.requiredApprovals,
    approvalsGiven: correction ? (m.correction?.approvals.length ?? 0) : m.approvals.length,
    releaseAt: m.releaseAt ? formatDateTime(Date.parse(m.releaseAt)) : null,
    // Everyone handed the original so far (sent or in a transaction now) gets the correction.
    delivered: m.counts.sent + m.counts.inFlight,
    mail,
    htmlPreviewUrl: `${req.baseUrl}${req.path}/preview?digest=${mail.digest}`,
    submittedDigest: approves && submitted !== mail.digest ? submitted : null,
    domains: d.domains ? await audienceDomains(d.domains, summary.audiences) : [],
    recall: correction && m.recall ? { by: m.recall.by, reason: m.recall.reason } : null,
    values,
    errors,
  };
}

function doneWording(action: LinkAction, m: Message, delivered: number): Omit<ResultPageData, "message" | "dashboardUrl"> {
  const n = m.recipientCount.toLocaleString("en-US");
  if (action === "approve") {
    if (m.state === "scheduled" && m.releaseAt) {
      const at = Date.parse(m.releaseAt);
      return {
        tone: "success",
        heading: "Approved",
        detail: `It goes out at ${formatTime(at)} (${formatDateTime(at)}) to ${n} recipients. You will get a notice with a recall link, in case.`,
      };
    }
    const missing = m.requiredApprovals - m.approvals.length;
    return { tone: "success", heading: "Approved", detail: `Your approval is recorded (${m.approvals.length} of ${m.requiredApprovals}). It needs ${missing} more before it is scheduled.` };
  }
  if (action === "reject") return { tone: "success", heading: "Rejected", detail: "Nothing will be sent. The author has been told, with your reason, and may edit and resubmit it." };
  if (action === "approveCorrection") {
    const c = m.correction;
    if (c?.status === "approved") {
      return { tone: "success", heading: "Correction approved", detail: `The correction with this text goes to the ${m.counts.sent.toLocaleString("en-US")} people who received the message.` };
    }
    const missing = (c?.required ?? 0) - (c?.approvals.length ?? 0);
    return { tone: "success", heading: "Correction approved", detail: `Your approval is recorded (${c?.approvals.length ?? 0} of ${c?.required ?? 0}). The text needs ${missing} more before it goes out.` };
  }
  if (action === "rejectCorrection") {
    return { tone: "success", heading: "Correction text rejected", detail: "The standard correction (the message was sent in error) goes out instead. Your reason is in the audit trail." };
  }
  if (m.state === "recalled") return { tone: "success", heading: "Recalled", detail: "Nobody received it, and nobody will." };
  return {
    tone: "success",
    heading: "Recalled",
    detail: `Nobody else will receive it. ${delivered.toLocaleString("en-US")} people had received it; the correction notice is going out to them now.`,
  };
}

/** What happened to a correction text that is no longer pending, completing "It …". */
const CORRECTION_STATUS: Record<string, string> = {
  standard: "was replaced by the standard correction",
  pending: "is waiting for a decision, but the message no longer allows one",
  approved: "was approved and goes out",
  declined: "was rejected; the standard correction goes instead",
};

function refusalWording(f: Refusal, signedIn?: string): Omit<ResultPageData, "message" | "dashboardUrl"> {
  const g = f.grant;
  const m = f.message;
  const verb = g ? VERB[g.action] : "use";
  const nothing = "Nothing was changed.";
  switch (f.code) {
    case "invalid":
      return { tone: "warning", heading: "This link is not valid", detail: `It may be incomplete or altered. ${nothing} Use the link in the latest email, or open the message on the dashboard.` };
    case "expired":
      if (g?.action === "recall" && m) return { tone: "info", heading: "This recall link has expired", detail: `The message is already ${STATE_LABELS[m.state] ?? m.state}: there is nothing left to recall. ${nothing}` };
      return { tone: "warning", heading: "This link has expired", detail: `It was valid until ${g ? formatDateTime(g.expiresAt) : "its expiry"}. ${nothing}` };
    case "used":
      return { tone: "info", heading: "This link was already used", detail: `A link works once; this one was used${g?.usedAt ? ` on ${formatDateTime(g.usedAt)}` : ""}. ${nothing}` };
    case "stale_revision":
      return {
        tone: "warning",
        heading: "The message changed since this email",
        detail: `This link is for revision ${g?.revision ?? "?"}; the author has since made revision ${m?.revision ?? "?"}, and a new request was sent for it. ${nothing}`,
      };
    case "closed":
      if (g && CORRECTION_ACTIONS.includes(g.action)) {
        const decided = m?.correction ? CORRECTION_STATUS[m.correction.status] : "no longer waiting for a decision";
        return { tone: "warning", heading: "The correction text is no longer waiting for a decision", detail: `It ${decided}. ${nothing}` };
      }
      return { tone: "warning", heading: `There is nothing to ${verb} any more`, detail: `The message is now ${m ? (STATE_LABELS[m.state] ?? m.state) : "closed"}. ${nothing}` };
    case "already":
      if (g?.action === "approveCorrection") return { tone: "info", heading: "You already approved this correction text", detail: `Your approval is recorded once. ${nothing}` };
      return { tone: "info", heading: "You already approved this revision", detail: `Your approval is recorded once. ${nothing}` };
    case "changed":
      return {
        tone: "warning",
        heading: "What would be sent changed since this page was shown",
        detail: `An approval names exactly what you saw (its digest), and that is no longer what would go out. ${nothing} Open the link again to see it as it is now.`,
      };
    case "wrong_action":
      return { tone: "warning", heading: "This link cannot do that", detail: `This link can only ${verb} the message. ${nothing}` };
    case "wrong_user":
      return { tone: "warning", heading: "This link was sent to someone else", detail: `It belongs to ${g?.user ?? "another person"}; you are signed in as ${signedIn ?? "someone else"}. ${nothing}` };
    case "bad_form":
      return { tone: "warning", heading: "Send the confirmation form once", detail: `The request did not come from the page's form as it is. ${nothing} Open the link again and use its button.` };
    case "forbidden":
      return {
        tone: "warning",
        heading: "You may not do this",
        detail:
          g && CORRECTION_ACTIONS.includes(g.action) && m?.recall && sameIdentity(m.recall.by, g.user)
            ? `You recalled this message and wrote its correction text: someone else decides on it. ${nothing}`
            : m && g && sameIdentity(m.author, g.user)
              ? `Nobody approves their own message. ${nothing}`
              : `Your roles do not allow this action on this message. ${nothing}`,
      };
  }
}
