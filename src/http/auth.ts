/** Bearer-token authentication for the JSON API. */
import type { Request, RequestHandler } from "express";
import type { User, UserDirectory } from "../auth/users.js";
import { DomainError } from "../domain/errors.js";

const USER = Symbol("airlock.user");

export function bearerAuth(users: UserDirectory): RequestHandler {
  return (req, _res, next) => {
    const header = req.headers.authorization;
    const m = typeof header === "string" ? /^Bearer\s+(\S{1,512})\s*$/i.exec(header) : null;
    if (!m) return next(new DomainError("unauthenticated", "send Authorization: Bearer <token>"));
    const user = users.byToken(m[1]!);
    if (!user) return next(new DomainError("unauthenticated", "unknown token"));
    (req as Request & { [USER]?: User })[USER] = user;
    next();
  };
}

export function currentUser(req: Request): User {
  const u = (req as Request & { [USER]?: User })[USER];
  if (!u) throw new DomainError("unauthenticated", "not signed in");
  return u;
}

export function setUser(req: Request, user: User): void {
  (req as Request & { [USER]?: User })[USER] = user;
}
