/**
 * Who is asking, for browser requests: the session cookie, and the two CSRF checks every
 * state-changing form passes — the request comes from our own origin (Fetch Metadata, else the
 * Origin header), and it carries the session's CSRF token.
 */
import type { Request, RequestHandler } from "express";
import { parseCookie } from "cookie";
import { DomainError } from "../../domain/errors.js";
import { setUser } from "../auth.js";
import { csrfMatches, SESSION_COOKIE, type Session, type SessionStore } from "./sessions.js";

const SESSION = Symbol("airlock.session");

export function sessionCookie(req: Request): string | undefined {
  const header = req.headers.cookie;
  if (typeof header !== "string") return undefined;
  try {
    return parseCookie(header)[SESSION_COOKIE];
  } catch {
    return undefined; // a malformed Cookie header is no session
  }
}

/** Loads the session (if any) and the user it names; never refuses. */
export function loadSession(sessions: SessionStore): RequestHandler {
  return async (req, _res, next) => {
    const s = await sessions.get(sessionCookie(req));
    if (s) {
      (req as Request & { [SESSION]?: Session })[SESSION] = s;
      setUser(req, s.user);
    }
    next();
  };
}

export function sessionOf(req: Request): Session | null {
  return (req as Request & { [SESSION]?: Session })[SESSION] ?? null;
}

/**
 * True when a browser says the request was started by a page of our own origin. Browsers send
 * Sec-Fetch-Site on every request (since 2020-2023); older ones send Origin on POST. A request with
 * neither is refused: no supported browser sends such a POST, and a script has the API for that.
 */
export function fromOwnOrigin(req: Request, publicUrl: string): boolean {
  const site = req.headers["sec-fetch-site"];
  if (typeof site === "string") return site === "same-origin";
  const origin = req.headers.origin;
  if (typeof origin !== "string") return false;
  const own = new Set([new URL(publicUrl).origin, `${req.protocol}://${req.get("host") ?? ""}`]);
  return own.has(origin);
}

/** Both CSRF checks for a request made with the session cookie. */
export function csrfOk(req: Request, publicUrl: string, submitted: unknown): boolean {
  const s = sessionOf(req);
  return s !== null && fromOwnOrigin(req, publicUrl) && csrfMatches(s, submitted);
}

/**
 * /api authentication: a bearer token (scripts, tests) or, from the dashboard's own pages, the
 * session cookie. With the cookie, anything but GET/HEAD must pass both CSRF checks, the token
 * in an `X-CSRF-Token` header. A request carrying a bearer header is judged by it alone.
 */
export function bearerOrSession(bearer: RequestHandler, publicUrl: string): RequestHandler {
  return (req, res, next) => {
    if (req.headers.authorization !== undefined || !sessionOf(req)) return bearer(req, res, next);
    if (req.method !== "GET" && req.method !== "HEAD" && !csrfOk(req, publicUrl, req.headers["x-csrf-token"])) {
      return next(new DomainError("forbidden", "cross-site request refused: send X-CSRF-Token from an Airlock page"));
    }
    next();
  };
}
