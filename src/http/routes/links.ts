/**
 * /links/:token — the links in approvers' and authors' emails.
 *
 * Mail security scanners (Safe Links, Mimecast, Proofpoint, Barracuda) fetch every link of every
 * mail, so GET and HEAD only show a confirmation page: they read, never write. The action happens
 * on the POST that the page's form sends. Every answer is a page; a refusal is a page with a 4xx
 * status that says what happened and that nothing changed.
 */
import express, { Router, type Request, type Response } from "express";
import type { UserDirectory } from "../../auth/users.js";
import type { Message } from "../../domain/message.js";
import type { LinkService, Refusal, RefusalCode } from "../../links/link-service.js";
import { formatDateTime, formatTime, STATE_LABELS } from "../../notify/format.js";
import type { ConfirmPageData, LinkAction, MessageSummary, ResultPageData } from "../../notify/notification-data.js";
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
};

const VERB: Record<LinkAction, string> = { approve: "approve", reject: "reject", recall: "recall" };

/** Pages carry no inline script or style: everything comes from /static (see app.ts). */
const PAGE_CSP = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

export function linkRoutes(d: LinkRouteDeps): Router {
  const r = Router();
  const send = (res: Response, status: number, html: string) => {
    res.status(status).set({ "Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Content-Security-Policy": PAGE_CSP }).type("html").send(html);
  };
  const result = async (res: Response, status: number, page: Omit<ResultPageData, "message" | "dashboardUrl">, m: Message | null) => {
    send(res, status, d.pages.result({ ...page, message: m ? await d.summary(m) : null, dashboardUrl: m ? dashboardUrl(d.publicUrl, m.id) : d.publicUrl + "/" }));
  };
  const refuse = async (res: Response, f: Refusal, signedIn?: string) => result(res, REFUSAL_STATUS[f.code], refusalWording(f, signedIn), f.message);

  // Express answers HEAD with this handler too (and drops the body): both only read.
  r.get("/:token", async (req, res) => {
    const i = await d.links.inspect(String(req.params.token));
    if (!i.ok) return refuse(res, i);
    send(res, 200, d.pages.confirm(await confirmData(d, req, i.grant.action, i.message, i.holder.name, { comment: "", reason: "", correctionText: "" }, null)));
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
      const i = out.inspected;
      const values = { comment: str(req.body?.comment), reason: str(req.body?.reason), correctionText: str(req.body?.correctionText) };
      return send(res, 400, d.pages.confirm(await confirmData(d, req, i.grant.action, i.message, i.holder.name, values, out.errors)));
    }
    return refuse(res, out, signedIn?.email);
  });

  // A body the parser refuses (too large, too many fields, a charset it cannot read): a page, not JSON.
  r.use((err: unknown, _req: Request, res: Response, next: express.NextFunction) => {
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
  action: LinkAction,
  m: Message,
  holderName: string,
  values: ConfirmPageData["values"],
  errors: ConfirmPageData["errors"],
): Promise<ConfirmPageData> {
  return {
    action,
    formAction: req.baseUrl + req.path,
    holderName,
    message: await d.summary(m),
    state: m.state,
    stateLabel: STATE_LABELS[m.state] ?? m.state,
    approvalsRequired: m.requiredApprovals,
    approvalsGiven: m.approvals.length,
    releaseAt: m.releaseAt ? formatDateTime(Date.parse(m.releaseAt)) : null,
    // Everyone handed the original so far (sent or in a transaction now) gets the correction.
    delivered: m.counts.sent + m.counts.inFlight,
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
  if (m.state === "recalled") return { tone: "success", heading: "Recalled", detail: "Nobody received it, and nobody will." };
  return {
    tone: "success",
    heading: "Recalled",
    detail: `Nobody else will receive it. ${delivered.toLocaleString("en-US")} people had received it; the correction notice is going out to them now.`,
  };
}

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
      return { tone: "warning", heading: `There is nothing to ${verb} any more`, detail: `The message is now ${m ? (STATE_LABELS[m.state] ?? m.state) : "closed"}. ${nothing}` };
    case "already":
      return { tone: "info", heading: "You already approved this revision", detail: `Your approval is recorded once. ${nothing}` };
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
        detail: m && g && m.author === g.user ? `Nobody approves their own message. ${nothing}` : `Your roles do not allow this action on this message. ${nothing}`,
      };
  }
}
