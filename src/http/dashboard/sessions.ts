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
 */
import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import type { Redis } from "ioredis";
import type { User, UserDirectory } from "../../auth/users.js";
import { keys } from "../../store/keys.js";
import type { Clock } from "../../domain/clock.js";
import type { AuditLog } from "../../audit/audit-log.js";

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
}

const hash = (id: string) => createHash("sha256").update(id).digest("hex");

export class SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly users: UserDirectory,
    private readonly clock: Clock,
    private readonly audit: AuditLog,
  ) {}

  /** Starts a session for the holder of `token` (audited); null when the token is unknown. */
  async start(token: string, from: { ip?: string }): Promise<{ id: string; session: Session } | null> {
    const user = this.users.byToken(token);
    if (!user) return null;
    const id = randomBytes(32).toString("base64url");
    const csrf = randomBytes(32).toString("base64url");
    const now = this.clock.now();
    const key = keys.session(hash(id));
    await this.redis.multi().hset(key, { user: user.email, credential: user.credential, csrf, createdAt: String(now), touchedAt: String(now) }).pexpire(key, IDLE_MS).exec();
    await this.audit.append(user.email, "signIn", { method: "token", ip: from.ip ?? null });
    return { id, session: { user, csrf } };
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
    const user = this.users.byAddress(h.user);
    // Removed from USERS_FILE, or its token rotated since the sign-in: the session ends.
    if (!user || h.credential !== user.credential) {
      await this.redis.del(key);
      return null;
    }
    if (now - Number(h.touchedAt) > TOUCH_EVERY_MS) {
      await this.redis.multi().hset(key, "touchedAt", String(now)).pexpire(key, IDLE_MS).exec();
    }
    return { user, csrf: h.csrf };
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

/** Constant-time comparison of a submitted CSRF token with the session's. */
export function csrfMatches(session: Session, submitted: unknown): boolean {
  if (typeof submitted !== "string") return false;
  const a = Buffer.from(submitted);
  const b = Buffer.from(session.csrf);
  return a.length === b.length && timingSafeEqual(a, b);
}
