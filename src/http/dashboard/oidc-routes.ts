/**
 * `GET /auth/login` and `GET /auth/callback`: the browser's half of OpenID Connect sign-in
 * (auth/oidc-sign-in.ts does the rest). Every refusal is a page with its status (400 does not
 * verify, 403 refused, 503 provider unreachable) and no session.
 *
 * Cookies: the flow's transaction id rides in `airlock_oidc` (HttpOnly, SameSite=Lax so that it
 * comes back on the provider's top-level redirect, path /auth/callback, 10 minutes). The session
 * cookie is SameSite=Strict, and browsers do not send it on a navigation that another site
 * started — the redirect chain from the provider included — so the callback answers a page that
 * moves on by itself (`Refresh` header): that navigation is ours, and the cookie goes with it.
 */
import { Router, type Request, type Response } from "express";
import { parseCookie } from "cookie";
import type { OidcSignIn } from "../../auth/oidc-sign-in.js";
import { TRANSACTION_TTL_SECONDS } from "../../auth/oidc-sign-in.js";
import { sessionCookie } from "./guards.js";
import { one, type DashboardDeps, type PageKit } from "./page-kit.js";
import { SESSION_COOKIE, SessionStore } from "./sessions.js";
import { safeNext } from "./sign-in-routes.js";

export const OIDC_COOKIE = "airlock_oidc";
const CALLBACK_PATH = "/auth/callback";

export function oidcRoutes(d: DashboardDeps & { signOn: OidcSignIn }, k: PageKit): Router {
  const r = Router();
  const secure = (req: Request) => req.secure || d.publicUrl.startsWith("https:");
  const back = { href: "/signin", label: "Back to sign-in" };

  r.get("/auth/login", async (req, res) => {
    const started = await d.signOn.begin(safeNext(one(req.query.next)));
    if (!started.ok) return k.refusePage(req, res, started.refusal.status, started.refusal.heading, started.refusal.detail, back);
    res.cookie(OIDC_COOKIE, started.transaction, { httpOnly: true, sameSite: "lax", secure: secure(req), path: CALLBACK_PATH, maxAge: TRANSACTION_TTL_SECONDS * 1000 });
    res.set("Cache-Control", "no-store").redirect(303, started.url.href);
  });

  r.get(CALLBACK_PATH, async (req, res: Response) => {
    const query = req.originalUrl.includes("?") ? req.originalUrl.slice(req.originalUrl.indexOf("?") + 1) : "";
    res.clearCookie(OIDC_COOKIE, { httpOnly: true, sameSite: "lax", secure: secure(req), path: CALLBACK_PATH });
    const done = await d.signOn.complete(transactionCookie(req), query, { ip: req.ip });
    if (!done.ok) return k.refusePage(req, res, done.refusal.status, done.refusal.heading, done.refusal.detail, back);
    await d.sessions.end(sessionCookie(req)); // a new sign-in replaces the old session (sent only if this navigation counts as ours)
    const started = await d.sessions.startOidc(done.person, done.refreshToken);
    res.cookie(SESSION_COOKIE, started.id, { httpOnly: true, sameSite: "strict", secure: secure(req), path: "/", maxAge: SessionStore.maxAgeMs });
    const next = safeNext(done.next);
    res.set("Refresh", `0; url=${next}`);
    k.page(res, 200, "error", k.frame(req, "Signed in", "none"), { heading: `Signed in as ${done.person.name}`, detail: "Taking you to Airlock…", next: { href: next, label: "Continue" } });
  });

  return r;
}

function transactionCookie(req: Request): string | undefined {
  const header = req.headers.cookie;
  if (typeof header !== "string") return undefined;
  try {
    return parseCookie(header)[OIDC_COOKIE];
  } catch {
    return undefined; // a malformed Cookie header: no sign-in under way
  }
}
