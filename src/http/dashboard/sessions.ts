/**
 * Browser sign-in for the dashboard: a user's API token is exchanged once for a session cookie.
 *
 * The cookie holds 256 random bits; Redis keeps only their SHA-256 (a Redis read or backup gives
 * no working session), with the user's address, the credential it was started with (the SHA-256 of
 * the token) and the session's CSRF token. The user is looked up in the directory on every request:
 * a role removed from USERS_FILE takes effect at once, and a removed user or a rotated token ends
 * the session (USERS_FILE is re-read when it changes: auth/users.ts watchUsersFile).
 * Sessions end when idle for IDLE_MS (Redis expiry, refreshed at most once a minute) and at the
 * latest after MAX_AGE_MS, or at sign-out.
 *
 * A session started with OpenID Connect (`method` oidc) carries the person's name and roles as the
 * provider last gave them, and is re-checked at the provider every OIDC_RECHECK_SECONDS: the first
 * request after that runs the check (one at a time per session, across processes) and is answered
 * only after it, so groups that no longer map, or a refused refresh, end the session at that very
 * request. Token sessions are checked against DASHBOARD_TOKEN_SIGNIN at every request.
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Redis } from "ioredis";
import type { Role, User, UserDirectory } from "../../auth/users.js";
import { keys } from "../../store/keys.js";
import type { Clock } from "../../domain/clock.js";
import type { AuditLog } from "../../audit/audit-log.js";
import { sealForSession, unsealForSession } from "./session-seal.js";

export const SESSION_COOKIE = "airlock_session";
/** A working day and a bit: an on-call operator signs in once per shift. */
const IDLE_MS = 12 * 3600_000;
/** However active, a week-old session ends. */
const MAX_AGE_MS = 7 * 24 * 3600_000;
/** Refreshing the idle expiry on every request would be a write per request; once a minute is plenty. */
const TOUCH_EVERY_MS = 60_000;

export interface Session {
  user: User;
  csrf: string;
  method: "token" | "oidc";
}

export type TokenSignIn = "everyone" | "admins" | "off";

/** Who may use token sign-in in the browser (DASHBOARD_TOKEN_SIGNIN): `admins` keeps it as the break-glass sign-in. */
export const tokenSignInAllows = (setting: TokenSignIn, user: { roles: readonly Role[] }): boolean =>
  setting === "everyone" || (setting === "admins" && user.roles.includes("admin"));

/** A person signed in with OpenID Connect, as a session holds them. */
export interface OidcSessionPerson {
  email: string;
  name: string;
  roles: Role[];
  issuer: string;
  subject: string;
  credential: string;
}

/** The re-check of an OpenID Connect session at the provider (auth/oidc-sign-in.ts). */
export interface OidcSessionCheck {
  recheckMs: number;
  /** The person as they are now, with the refresh token to keep; null: the session ends (audited there). */
  recheck(p: OidcSessionPerson, refreshToken: string | null): Promise<{ person: OidcSessionPerson; refreshToken: string | null } | null>;
}

/** A re-check running in another process is waited for this long: past the provider's own timeout (10 s). */
const RECHECK_WAIT_MS = 15_000;
/** How long the re-check lock is held at most (a process that died holding it frees it then). */
const RECHECK_LOCK_MS = 20_000;
/** Poll interval while another process re-checks the same session. */
const RECHECK_POLL_MS = 100;

/** KEYS: 1 session. ARGV: field, value, … Writes only if the session still exists (a sign-out may have come first). */
/** Deletes the re-check lock only while it is still this holder's (a re-check slower than the lock must not free another's). */
const RELEASE_IF_MINE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`;
const UPDATE_IF_EXISTS = `if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], unpack(ARGV)) return 1 end return 0`;

const hash = (id: string) => createHash("sha256").update(id).digest("hex");

export class SessionStore {
  private readonly rechecks = new Map<string, Promise<Record<string, string> | null>>();

  constructor(
    private readonly redis: Redis,
    private readonly users: UserDirectory,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
    private readonly opts: { tokenSignIn: TokenSignIn; oidc: OidcSessionCheck | null } = { tokenSignIn: "everyone", oidc: null },
  ) {}

  get tokenSignIn(): TokenSignIn {
    return this.opts.tokenSignIn;
  }

  /**
   * Starts a session for the holder of `token` (audited); `unknown` when the token is nobody's,
   * `not_allowed` when DASHBOARD_TOKEN_SIGNIN keeps this user from token sign-in in the browser.
   */
  async start(token: string, from: { ip?: string }): Promise<{ id: string; session: Session } | "unknown" | "not_allowed"> {
    const user = this.users.byToken(token);
    if (!user) return "unknown";
    if (!tokenSignInAllows(this.opts.tokenSignIn, user)) {
      await this.audit.append(user.email, "signInRefused", { method: "token", reason: "token_signin_" + this.opts.tokenSignIn, ip: from.ip ?? null });
      return "not_allowed";
    }
    const { id, csrf } = await this.create({ user: user.email, credential: user.credential, method: "token" });
    await this.audit.append(user.email, "signIn", { method: "token", ip: from.ip ?? null });
    return { id, session: { user, csrf, method: "token" } };
  }

  /** Starts a session for a person the provider just vouched for (the caller audits the sign-in). */
  async startOidc(p: OidcSessionPerson, refreshToken: string | null): Promise<{ id: string; session: Session }> {
    const checkAt = this.clock.now() + (this.opts.oidc?.recheckMs ?? 0);
    const { id, csrf } = await this.create(oidcFields(p, checkAt), (id): Record<string, string> => (refreshToken ? { rt: sealForSession(id, refreshToken) } : {}));
    return { id, session: { user: oidcUser(p), csrf, method: "oidc" } };
  }

  private async create(fields: Record<string, string>, secrets: (id: string) => Record<string, string> = () => ({})): Promise<{ id: string; csrf: string }> {
    const id = randomBytes(32).toString("base64url");
    const csrf = randomBytes(32).toString("base64url");
    const now = String(this.clock.now());
    const key = keys.session(hash(id));
    await this.redis.multi().hset(key, { ...fields, ...secrets(id), csrf, createdAt: now, touchedAt: now }).pexpire(key, IDLE_MS).exec();
    return { id, csrf };
  }

  /** The session a cookie value names, or null (unknown, expired, or its user left the directory). */
  async get(id: string | undefined): Promise<Session | null> {
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return null;
    const key = keys.session(hash(id));
    const h = await this.redis.hgetall(key);
    if (!h.user || !h.csrf) return null;
    const now = this.clock.now();
    if (now - Number(h.createdAt) > MAX_AGE_MS) {
      await this.redis.del(key);
      return null;
    }
    let user: User;
    let fields = h;
    if (h.method === "oidc") {
      if (!this.opts.oidc) {
        await this.redis.del(key); // OpenID Connect sign-in was turned off since
        return null;
      }
      if (now >= Number(h.checkAt)) {
        const checked = await this.recheckOnce(id, key, h);
        if (!checked) return null;
        fields = checked;
      }
      user = oidcUser(personOf(fields));
    } else {
      const u = this.users.byAddress(h.user);
      // Removed from USERS_FILE, or its token rotated since the sign-in, or token sign-in no longer allowed for them: the session ends.
      if (!u || h.credential !== u.credential || !tokenSignInAllows(this.opts.tokenSignIn, u)) {
        await this.redis.del(key);
        return null;
      }
      user = u;
    }
    if (now - Number(fields.touchedAt) > TOUCH_EVERY_MS) {
      await this.redis.multi().hset(key, "touchedAt", String(now)).pexpire(key, IDLE_MS).exec();
    }
    return { user, csrf: h.csrf, method: h.method === "oidc" ? "oidc" : "token" };
  }

  /** One re-check per session at a time: in this process by sharing the promise, across processes by a Redis lock. */
  private recheckOnce(id: string, key: string, h: Record<string, string>): Promise<Record<string, string> | null> {
    let running = this.rechecks.get(key);
    if (!running) {
      running = this.recheck(id, key, h).finally(() => this.rechecks.delete(key));
      this.rechecks.set(key, running);
    }
    return running;
  }

  private async recheck(id: string, key: string, h: Record<string, string>): Promise<Record<string, string> | null> {
    const lock = keys.sessionRecheck(hash(id));
    const holder = randomBytes(16).toString("hex");
    if ((await this.redis.set(lock, holder, "PX", RECHECK_LOCK_MS, "NX")) !== "OK") return this.awaitOtherRecheck(key, Number(h.checkAt));
    try {
      const rt = h.rt ? unsealForSession(id, h.rt) : null;
      const result = await this.opts.oidc!.recheck(personOf(h), rt);
      if (!result) {
        await this.redis.del(key);
        return null;
      }
      const checkAt = this.clock.now() + this.opts.oidc!.recheckMs;
      const update = { ...oidcFields(result.person, checkAt), ...(result.refreshToken ? { rt: sealForSession(id, result.refreshToken) } : {}) };
      const kept = await this.redis.eval(UPDATE_IF_EXISTS, 1, key, ...Object.entries(update).flat());
      return kept === 1 ? { ...h, ...update } : null;
    } finally {
      await this.redis.eval(RELEASE_IF_MINE, 1, lock, holder);
    }
  }

  /** Another process holds the lock: wait until the session shows a later check, or is gone. */
  private async awaitOtherRecheck(key: string, checkAt: number): Promise<Record<string, string> | null> {
    const end = Date.now() + RECHECK_WAIT_MS;
    while (Date.now() < end) {
      await new Promise((r) => setTimeout(r, RECHECK_POLL_MS)); // the other process is talking to the provider
      const h = await this.redis.hgetall(key);
      if (!h.user) return null;
      if (Number(h.checkAt) > checkAt) return h;
    }
    return null; // not answered in time: this request is treated as signed out, the session is left to the other check
  }

  async end(id: string | undefined): Promise<void> {
    if (id && /^[A-Za-z0-9_-]{43}$/.test(id)) await this.redis.del(keys.session(hash(id)));
  }

  /** Ends a session at its user's request (audited). */
  async signOut(id: string | undefined): Promise<void> {
    if (!id || !/^[A-Za-z0-9_-]{43}$/.test(id)) return;
    const key = keys.session(hash(id));
    const [[, user]] = (await this.redis.multi().hget(key, "user").del(key).exec()) as [[null, string | null], [null, number]];
    if (user) await this.audit.append(user, "signOut", {});
  }

  static readonly maxAgeMs = MAX_AGE_MS;
}

function oidcFields(p: OidcSessionPerson, checkAt: number): Record<string, string> {
  return { method: "oidc", user: p.email, name: p.name, roles: JSON.stringify(p.roles), issuer: p.issuer, subject: p.subject, credential: p.credential, checkAt: String(checkAt) };
}

function personOf(h: Record<string, string>): OidcSessionPerson {
  let roles: Role[] = [];
  try {
    roles = JSON.parse(h.roles ?? "[]") as Role[];
  } catch {
    // a damaged field gives no role: the pages then refuse what needs one
  }
  return { email: h.user!, name: h.name ?? h.user!, roles, issuer: h.issuer ?? "", subject: h.subject ?? "", credential: h.credential ?? "" };
}

const oidcUser = (p: OidcSessionPerson): User => ({ email: p.email, name: p.name, roles: [...p.roles], senders: [], credential: p.credential });

/** Constant-time comparison of a submitted CSRF token with the session's. */
export function csrfMatches(session: Session, submitted: unknown): boolean {
  if (typeof submitted !== "string") return false;
  const a = Buffer.from(submitted);
  const b = Buffer.from(session.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}
