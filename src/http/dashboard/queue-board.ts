/**
 * /ops/queues: BullMQ's own board (@bull-board), for `ops` and `admin` signed in to the dashboard,
 * read-only. Its writes (add, retry, clean, obliterate, remove schedulers) would bypass the audit
 * trail and could remove the timer sweep itself; its single-page app also cannot send our CSRF
 * token. Actions on messages go through the dashboard's own forms.
 */
import { createBullBoard } from "@bull-board/api";
import { BullMQAdapter } from "@bull-board/api/bullMQAdapter";
import { ExpressAdapter } from "@bull-board/express";
import type { Queue } from "bullmq";
import { Router, type RequestHandler } from "express";
import { fromOwnOrigin, sessionOf } from "./guards.js";

export const QUEUE_BOARD_PATH = "/ops/queues";

/** Its bundle is served from our origin; its markup carries inline styles. */
const BOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'self'";

export function queueBoard(queues: Queue[], publicUrl: string, refuse: (status: number, heading: string, detail: string) => RequestHandler): Router {
  const adapter = new ExpressAdapter();
  adapter.setBasePath(QUEUE_BOARD_PATH);
  createBullBoard({ queues: queues.map((q) => new BullMQAdapter(q, { readOnlyMode: true })), serverAdapter: adapter, options: { uiConfig: { boardTitle: "Airlock queues" } } });
  const r = Router();
  r.use((req, res, next) => {
    const s = sessionOf(req);
    if (!s) {
      if (req.method === "GET") return res.redirect(303, `/signin?next=${encodeURIComponent(req.originalUrl)}`);
      return refuse(401, "Signed out", "Sign in again; nothing was changed.")(req, res, next);
    }
    if (!s.user.roles.includes("ops") && !s.user.roles.includes("admin")) {
      return refuse(403, "Not allowed", "The queue board is for the ops and admin roles.")(req, res, next);
    }
    if (req.method !== "GET" && req.method !== "HEAD" && !fromOwnOrigin(req, publicUrl)) {
      return refuse(403, "Refused: cross-site request", "Nothing was changed.")(req, res, next);
    }
    res.set({ "Content-Security-Policy": BOARD_CSP, "Cache-Control": "no-store" });
    next();
  });
  r.use(adapter.getRouter() as Router);
  return r;
}
