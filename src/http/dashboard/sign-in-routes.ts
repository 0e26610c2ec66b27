/** Signing in with a personal API token, and out: the session cookie and where to go next. */
import { Router, type Request, type Response } from "express";
import { fromOwnOrigin, sessionCookie, sessionOf } from "./guards.js";
import { form, one, type DashboardDeps, type PageKit } from "./page-kit.js";
import { SESSION_COOKIE, SessionStore } from "./sessions.js";

export function signInRoutes(d: DashboardDeps, k: PageKit): Router {
  const r = Router();
  /** Secure when this request came over TLS (through the trusted proxies) or the service is published on https. */
  const secureCookie = (req: Request) => req.secure || d.publicUrl.startsWith("https:");

  /** The sign-in page: "Sign in with <provider>" when configured, and the token form as DASHBOARD_TOKEN_SIGNIN allows. */
  const signInPage = (req: Request, res: Response, status: number, next: string, error: string | null) =>
    k.page(res, status, "signin", k.frame(req, "Sign in", "none"), {
      next,
      error,
      signOn: d.signOn ? { name: d.signOn.providerName, next: encodeURIComponent(next) } : null,
      tokenForm: d.sessions.tokenSignIn === "off" ? null : { breakGlass: d.sessions.tokenSignIn === "admins" },
    });

  r.get("/signin", (req, res) => {
    if (sessionOf(req)) return res.redirect(303, safeNext(one(req.query.next)));
    signInPage(req, res, 200, safeNext(one(req.query.next)), null);
  });

  r.post("/signin", form, async (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const next = safeNext(one(body.next));
    // No session yet, so no CSRF token: the origin check stops another site signing a browser in as someone else.
    if (!fromOwnOrigin(req, d.publicUrl)) return k.refusePage(req, res, 403, "Refused: sign in from the Airlock sign-in page", "Nothing was changed.");
    if (d.sessions.tokenSignIn === "off") {
      return k.refusePage(req, res, 403, "Token sign-in is off", `Sign in with ${d.signOn?.providerName ?? "your company account"} instead. Nothing was changed.`, { href: "/signin", label: "Back to sign-in" });
    }
    const token = one(body.token)?.trim() ?? "";
    const started = token.length > 0 && token.length <= 512 ? await d.sessions.start(token, { ip: req.ip }) : "unknown";
    if (started === "unknown") {
      d.logger.warn({ ip: req.ip }, "dashboard sign-in refused: unknown token");
      return signInPage(req, res, 401, next, "That token is not valid. Check it and try again.");
    }
    if (started === "not_allowed") {
      d.logger.warn({ ip: req.ip }, "dashboard sign-in refused: token sign-in is for administrators only");
      return signInPage(req, res, 403, next, `Token sign-in is kept for administrators (break-glass). Sign in with ${d.signOn?.providerName ?? "your company account"}.`);
    }
    await d.sessions.end(sessionCookie(req)); // a new sign-in replaces the old session
    res.cookie(SESSION_COOKIE, started.id, { httpOnly: true, sameSite: "strict", secure: secureCookie(req), path: "/", maxAge: SessionStore.maxAgeMs });
    d.logger.info({ user: started.session.user.email }, "dashboard sign-in");
    res.redirect(303, next);
  });

  r.post("/signout", form, k.signedIn, k.csrf, async (req, res) => {
    await d.sessions.signOut(sessionCookie(req));
    res.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: "strict", secure: secureCookie(req), path: "/" });
    res.redirect(303, "/signin");
  });

  return r;
}

/** Only a path on this site: `//evil.example` and `https://…` fall back to the front page. */
export function safeNext(next: string | undefined): string {
  return next && /^\/(?![/\\])[\x21-\x7e]{0,500}$/.test(next) ? next : "/";
}
