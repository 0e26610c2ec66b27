/**
 * The dashboard's pages: sign-in, pending sends, a message, its recall, its review by approvers
 * (review-routes.ts), history, compose and edit (compose-routes.ts), my messages, the development outbox. Server-rendered; /static/dashboard.js only makes them live (SSE, countdowns). Every
 * decision goes through MessageService, exactly as the API's do; the view rules live in
 * view-model.ts. This file puts the groups of routes together and turns their errors into pages.
 */
import { Router, type NextFunction, type Request, type Response } from "express";
import { DomainError, ReplicationLagError } from "../../domain/errors.js";
import { STATUS } from "../errors.js";
import { composeRoutes } from "./compose-routes.js";
import { formRoutes } from "./form-routes.js";
import { mineRoutes } from "./mine-routes.js";
import { outboxRoutes } from "./outbox-routes.js";
import { pageKit, type DashboardDeps } from "./page-kit.js";
import { pageRoutes } from "./page-routes.js";
import { reviewRoutes } from "./review-routes.js";
import { oidcRoutes } from "./oidc-routes.js";
import { signInRoutes } from "./sign-in-routes.js";

export { DASHBOARD_CSP, errorPage, type DashboardDeps } from "./page-kit.js";

export function dashboardRoutes(d: DashboardDeps): Router {
  const r = Router();
  const k = pageKit(d);
  r.use(signInRoutes(d, k));
  if (d.signOn) r.use(oidcRoutes({ ...d, signOn: d.signOn }, k));
  r.use(pageRoutes(d, k));
  r.use(formRoutes(d, k));
  r.use(reviewRoutes(d, k));
  r.use(composeRoutes(d, k));
  r.use(mineRoutes(d, k));
  if (d.outboxDir) r.use(outboxRoutes(d.outboxDir, k));

  // Errors of the pages above become pages too, never JSON and never a 500 for a person's mistake.
  r.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (!isPagePath(req.path)) return next(err);
    if (err instanceof DomainError) return k.refusePage(req, res, STATUS[err.code], headingFor(err), err.message);
    if (err instanceof ReplicationLagError) {
      d.logger.warn({ method: req.method, url: req.originalUrl, acknowledged: err.acknowledged, required: err.required }, "dashboard: answered 503, not yet on enough Redis replicas");
      return k.refusePage(req, res, 503, "Recorded, not yet confirmed", "Your action reached the database but not yet enough of its replicas to be sure it survives a failover. Try again in a moment: it will be confirmed, or you will see it was already done.");
    }
    const type = (err as { type?: unknown })?.type;
    if (type === "entity.too.large") return k.refusePage(req, res, 413, "Too large", "The form was larger than allowed. Nothing was changed.");
    if (typeof type === "string") return k.refusePage(req, res, 400, "The form could not be read", "Reload the page and try again. Nothing was changed.");
    d.logger.error({ err, method: req.method, url: req.originalUrl }, "dashboard: unexpected error");
    k.refusePage(req, res, 500, "Something went wrong", "The error was logged. Nothing you did caused it; try again in a moment.");
  });
  return r;
}

function isPagePath(path: string): boolean {
  return /^\/(signin|signout|auth|history|outbox|fragments|messages|compose|mine)(\/|$)|^\/$/.test(path);
}

function headingFor(e: DomainError): string {
  switch (e.code) {
    case "not_found":
      return "Not found";
    case "forbidden":
    case "self_approval":
      return "Not allowed";
    case "conflict":
    case "stale_revision":
    case "already_approved":
      return "Not done: the message has moved on";
    default:
      return "Not done";
  }
}
