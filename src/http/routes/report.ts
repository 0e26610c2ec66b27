/**
 * /report/:token — the "Report a problem with this message" link in the footer of a staged send's
 * early waves (issue 16). Like the approver links (links.ts): GET and HEAD only show a page (mail
 * scanners open every link), the report is the POST of the page's form, every answer is a page,
 * and a POST started by another site is refused.
 *
 * One browser counts once per message: the POST sets a random id in a cookie (HttpOnly,
 * SameSite=Lax, path /report) and records the report with it as the dedupe key. A browser that
 * keeps no cookies counts at each POST; the rate limit in front of this router (the links' one,
 * see `reportRateLimited`) bounds that, as it bounds token guessing.
 *
 * The note is optional and at most NOTE_MAX_CHARS characters (line breaks counted as one, as the
 * textarea's maxlength counts them). A longer one — only a request not made by the form can carry
 * it — is refused with the form shown again with the note and the error, and nothing is recorded.
 */
import { randomBytes } from "node:crypto";
import { parseCookie } from "cookie";
import express, { Router, type NextFunction, type Request, type RequestHandler, type Response } from "express";
import { ReplicationLagError } from "../../domain/errors.js";
import { someLines } from "../../inbound/bounded-text.js";
import type { ReportLinks } from "../../waves/report-link.js";
import type { SignalSink } from "../../waves/signals.js";
import type { ReportPageRenderer, ReportResultData } from "../report-pages.js";

export interface ReportRouteDeps {
  links: Pick<ReportLinks, "verify">;
  sink: SignalSink;
  /** The message a token names, for the pages; null when there is no such message. */
  subject(id: string): Promise<{ subject: string } | null>;
  pages: ReportPageRenderer;
  /** PUBLIC_URL: the cookie is Secure when it is https (or the request came over TLS). */
  publicUrl: string;
  logger?: { info(msg: string): void; warn(msg: string): void };
}

export const NOTE_MAX_CHARS = 500;
export const REPORTER_COOKIE = "airlock_reporter";
/** Long enough to cover a staged send's waves many times over; the cookie holds only a random id. */
const COOKIE_MAX_AGE_MS = 180 * 24 * 3600 * 1000;
const COOKIE_VALUE = /^[A-Za-z0-9_-]{22}$/;

/** No frame, no inline script or style: everything comes from /static. */
const PAGE_CSP = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

type Wording = Omit<ReportResultData, "subject">;

const NOTHING = "Nothing was recorded.";
const INVALID: Wording = {
  tone: "warning",
  heading: "This report link is not valid",
  detail: `The link is incomplete or was changed, so it names no message Airlock sent. Open it again from the message (copy the whole link if it was split). ${NOTHING}`,
};
const UNKNOWN: Wording = { tone: "warning", heading: "This message is not known here", detail: `Airlock has no message for this link. ${NOTHING}` };
const NOT_SENT: Wording = { tone: "info", heading: "This message was not sent", detail: `It has not gone out to anyone, so there is nothing to report. ${NOTHING}` };

function send(res: Response, status: number, html: string): void {
  res.status(status).set({ "Cache-Control": "no-store", "X-Robots-Tag": "noindex, nofollow", "Content-Security-Policy": PAGE_CSP }).type("html").send(html);
}

/** The answer of the rate limiter in front of /report (app.ts: `limiter(d.rateLimits.links, reportRateLimited(pages))`). */
export function reportRateLimited(pages: ReportPageRenderer): RequestHandler {
  return (_req, res) => send(res, 429, pages.result({ tone: "warning", heading: "Too many requests", detail: `Wait a minute and open the link again. ${NOTHING}`, subject: null }));
}

export function reportRoutes(d: ReportRouteDeps): Router {
  const r = Router();
  const result = (res: Response, status: number, w: Wording, subject: string | null = null) => send(res, status, d.pages.result({ ...w, subject }));
  const form = (req: Request, res: Response, status: number, subject: string, note: string, error: string | null) =>
    send(res, status, d.pages.form({ formAction: req.baseUrl + req.path, subject, note, error, maxChars: NOTE_MAX_CHARS }));

  // Express answers HEAD with this handler too (and drops the body): both only read.
  r.get("/:token", async (req, res) => {
    const id = d.links.verify(String(req.params.token));
    if (id === null) return result(res, 404, INVALID);
    const m = await d.subject(id);
    if (!m) return result(res, 404, UNKNOWN);
    form(req, res, 200, m.subject, "", null);
  });

  r.post("/:token", express.urlencoded({ extended: false, limit: "16kb", parameterLimit: 10 }), async (req, res) => {
    // The form is on our own page: a POST started by another site is refused whatever it carries.
    if (req.headers["sec-fetch-site"] === "cross-site") {
      return result(res, 403, { tone: "warning", heading: "Refused: this request came from another site", detail: `Open the link from the message and send the form on the page it shows. ${NOTHING}` });
    }
    if (!req.is("application/x-www-form-urlencoded")) {
      return result(res, 415, { tone: "warning", heading: "Send the report form", detail: `This address accepts only the form on its page. ${NOTHING}` });
    }
    const id = d.links.verify(String(req.params.token));
    if (id === null) return result(res, 404, INVALID);
    const m = await d.subject(id);
    if (!m) return result(res, 404, UNKNOWN);

    const raw = typeof req.body?.note === "string" ? (req.body.note as string).replace(/\r\n?/g, "\n") : "";
    if (raw.length > NOTE_MAX_CHARS) {
      const error = `Write at most ${NOTE_MAX_CHARS} characters (this note has ${raw.length}). Nothing was recorded yet.`;
      return form(req, res, 400, m.subject, raw, error);
    }
    const note = someLines(raw, NOTE_MAX_CHARS).trim();

    // Set before recording: a retry after a failure carries the same id, so it still counts once.
    const reporter = reporterId(req) ?? newReporter(req, res, d.publicUrl);
    const answer = await d.sink.record(id, "report", note ? { excerpt: note } : {}, `report:${reporter}`);
    if (!answer.ok) {
      d.logger?.info(`message ${id} report not recorded: ${answer.err}`);
      return answer.err === "not_found" ? result(res, 404, UNKNOWN) : result(res, 409, NOT_SENT, m.subject);
    }
    d.logger?.info(`message ${id} report ${answer.counted ? "recorded" : "repeated, counted once"}${answer.halted ? ": the send is halted" : ""}`);
    if (!answer.counted) {
      return result(res, 200, { tone: "info", heading: "You already reported this message", detail: "Your first report was passed on; each person counts once. You can close this page." }, m.subject);
    }
    result(res, 200, { tone: "success", heading: "Your report was passed on", detail: "The people who sent this message will see it. You can close this page." }, m.subject);
  });

  r.use((err: unknown, _req: Request, res: Response, next: NextFunction) => {
    // Recorded on the Redis primary, not yet on enough replicas (REDIS_MIN_REPLICAS_ACK): sending again counts once.
    if (err instanceof ReplicationLagError) {
      return result(res, 503, { tone: "warning", heading: "Recorded, not yet confirmed", detail: "Your report reached the database but not yet enough of its replicas. Go back and send it again in a moment: it counts once." });
    }
    // A body the parser refuses (too large, too many fields, a charset it cannot read): a page, not JSON.
    const status = typeof err === "object" && err !== null && "status" in err && typeof err.status === "number" && err.status >= 400 && err.status < 500 ? err.status : null;
    if (status !== null) return result(res, status, { tone: "warning", heading: "This request could not be read", detail: `Use the form on the link's page. ${NOTHING}` });
    if (res.headersSent) return next(err);
    // The store is unreachable: whoever reports gets a page, not the API's JSON error.
    d.logger?.warn(`report not recorded: ${(err as Error)?.message ?? String(err)}`);
    result(res, 503, { tone: "warning", heading: "Your report could not be recorded now", detail: "Try again in a few minutes: a report sent twice counts once." });
  });

  return r;
}

function reporterId(req: Request): string | null {
  const header = req.headers.cookie;
  if (typeof header !== "string") return null;
  try {
    const v = parseCookie(header)[REPORTER_COOKIE];
    return v && COOKIE_VALUE.test(v) ? v : null;
  } catch {
    return null; // a malformed Cookie header is no id
  }
}

function newReporter(req: Request, res: Response, publicUrl: string): string {
  const id = randomBytes(16).toString("base64url");
  res.cookie(REPORTER_COOKIE, id, {
    httpOnly: true,
    sameSite: "lax",
    secure: req.secure || publicUrl.startsWith("https:"),
    path: req.baseUrl || "/report",
    maxAge: COOKIE_MAX_AGE_MS,
  });
  return id;
}
