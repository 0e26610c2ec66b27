/**
 * What every group of dashboard routes shares: the dependencies, the page frame, the guards
 * (signed in, CSRF) and the lookup of the message a URL names.
 */
import express, { type NextFunction, type Request, type Response } from "express";
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { z } from "zod";
import type { AudienceStore } from "../../audiences/audience-store.js";
import type { OidcSignIn } from "../../auth/oidc-sign-in.js";
import type { User } from "../../auth/users.js";
import { DomainError } from "../../domain/errors.js";
import type { Message } from "../../domain/message.js";
import type { Renderer } from "../../mail/render.js";
import type { MessageService } from "../../service/message-service.js";
import type { MessageStore } from "../../store/message-store.js";
import { csrfOk, sessionOf } from "./guards.js";
import type { SessionStore } from "./sessions.js";
import { cardView, type CardView } from "./view-model.js";
import type { DashboardPage, DashboardViews, Frame } from "./views.js";

export interface DashboardDeps {
  sessions: SessionStore;
  service: MessageService;
  store: MessageStore;
  redis: Redis;
  views: DashboardViews;
  queues: Queue[];
  outboxDir: string | null;
  publicUrl: string;
  clock: { now(): number };
  logger: Logger;
  /** Builds the message exactly as the fan-out does (mail/compose.ts), for the message page's parts and digest. */
  renderer: Renderer;
  /** Recipients by domain of each audience, for the message page; the catalogue, for the compose page's audience picker. */
  audiences: Pick<AudienceStore, "domains" | "list">;
  /** OpenID Connect sign-in, when OIDC_ISSUER is set. */
  signOn: OidcSignIn | null;
}

/** Pages are ours alone: scripts and styles from /static, the preview in a same-origin frame, SSE to ourselves. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const idParam = z.object({ id: z.string().regex(/^[1-9][0-9]{0,15}$/) });
export const form = express.urlencoded({ extended: false, limit: "64kb", parameterLimit: 20 });
export const one = (v: unknown) => (typeof v === "string" ? v : undefined);

export const canSeeQueues = (u: User) => u.roles.includes("ops") || u.roles.includes("admin");

function frameFor(req: Request, title: string, nav: Frame["nav"], hasOutbox: boolean, now: number): Frame {
  const s = sessionOf(req);
  return {
    title,
    user: s ? { name: s.user.name, email: s.user.email, roles: s.user.roles } : null,
    csrf: s?.csrf ?? null,
    nav,
    canSeeQueues: s ? canSeeQueues(s.user) : false,
    hasOutbox: hasOutbox && s !== null && canSeeQueues(s.user),
    serverNow: now,
  };
}

function sendPage(views: DashboardViews, res: Response, status: number, view: DashboardPage, f: Frame, data: object): void {
  res.status(status).set({ "Cache-Control": "no-store", "Content-Security-Policy": DASHBOARD_CSP }).type("html").send(views.page(view, f, data));
}

/** Where a refusal page points to next, besides the pending sends (the fresh review of a message that changed). */
export interface NextStep {
  href: string;
  label: string;
}

/** A page saying what was refused and that nothing changed (also used by the queue board's guard). */
export function errorPage(d: Pick<DashboardDeps, "views" | "outboxDir" | "clock">, req: Request, res: Response, status: number, heading: string, detail: string, next?: NextStep): void {
  sendPage(d.views, res, status, "error", frameFor(req, heading, "none", d.outboxDir !== null, d.clock.now()), { heading, detail, next: next ?? null });
}

export type PageKit = ReturnType<typeof pageKit>;

export function pageKit(d: DashboardDeps) {
  const refusePage = (req: Request, res: Response, status: number, heading: string, detail: string, next?: NextStep) => errorPage(d, req, res, status, heading, detail, next);
  const card = (req: Request, m: Message): CardView => {
    const user = sessionOf(req)!.user;
    return cardView(m, d.clock.now(), d.service.mayRecall(user, m), d.service.mayPause(user), d.service.awaitingDecisionOf(user, m));
  };
  return {
    frame: (req: Request, title: string, nav: Frame["nav"]) => frameFor(req, title, nav, d.outboxDir !== null, d.clock.now()),
    page: (res: Response, status: number, view: DashboardPage, f: Frame, data: object) => sendPage(d.views, res, status, view, f, data),
    refusePage,
    card,

    /** Pages behind it need a session: a GET goes to the sign-in page and comes back; anything else is refused. */
    signedIn: (req: Request, res: Response, next: NextFunction) => {
      const s = sessionOf(req);
      if (s) return next();
      if (req.method === "GET" || req.method === "HEAD") return res.redirect(303, `/signin?next=${encodeURIComponent(req.originalUrl)}`);
      refusePage(req, res, 401, "Signed out", "Your session has ended. Sign in again; nothing was changed.");
    },

    /** Every state-changing form: same origin and the session's CSRF token. */
    csrf: (req: Request, res: Response, next: NextFunction) => {
      if (csrfOk(req, d.publicUrl, (req.body as Record<string, unknown> | undefined)?._csrf)) return next();
      refusePage(req, res, 403, "Refused: this form did not come from this Airlock page", "Reload the page and try again. Nothing was changed.");
    },

    /** The message the URL names, if this user may see it; not_found (a page) otherwise. */
    messageOr404: async (req: Request): Promise<Message> => {
      const p = idParam.safeParse(req.params);
      if (!p.success) throw new DomainError("not_found", "there is no such message");
      return d.service.get(sessionOf(req)!.user, p.data.id);
    },
  };
}
