/**
 * Approver link tokens.
 *
 * A token is `<id>.<mac>`: `id` is 128 random bits (base64url), `mac` is
 * HMAC-SHA256(LINK_SECRET, id + every field of the grant). The grant (user, message, revision,
 * action, expiry) is stored in Redis under the id, together with whether it was used.
 * - Guessing a token means guessing 128 random bits; forging one for a known id needs LINK_SECRET
 *   (so a read of Redis, a backup or a log of ids gives no usable link).
 * - Changing the stored grant (say, its user) breaks the MAC: the grant cannot be edited either.
 * - The stored record is what makes a token work once and lets an operator see or revoke it.
 * MACs are compared in constant time (timingSafeEqual on equal-length buffers).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import type { Redis } from "ioredis";
import type { LinkAction } from "../notify/notification-data.js";
import { PREFIX } from "../store/keys.js";
import type { Clock } from "../domain/clock.js";

export const LINK_ACTIONS: readonly LinkAction[] = ["approve", "reject", "recall", "approveCorrection", "rejectCorrection"];

export interface LinkGrant {
  user: string;
  message: string;
  revision: number;
  action: LinkAction;
  /** Epoch ms after which the token no longer works. */
  expiresAt: number;
}

export interface StoredGrant extends LinkGrant {
  id: string;
  issuedAt: number;
  usedAt: number | null;
}

export type TokenCheck =
  | { ok: true; grant: StoredGrant }
  | { ok: false; reason: "malformed" | "unknown" | "tampered" }
  | { ok: false; reason: "expired" | "used"; grant: StoredGrant };

/** The record is kept this long after the token expired, so a late click says "expired", not "unknown". */
const KEEP_AFTER_EXPIRY_MS = 30 * 24 * 3600_000;

const TOKEN = /^([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]{43})$/;

export const linkKey = (id: string) => `${PREFIX}:link:${id}`;

/** Pure: the MAC of one grant. Field order and separators are fixed; `\n` cannot occur in a field. */
export function linkMac(secret: string, id: string, g: LinkGrant): string {
  const body = ["airlock-link-v1", id, g.user, g.message, String(g.revision), g.action, String(g.expiresAt)].join("\n");
  return createHmac("sha256", secret).update(body).digest("base64url");
}

/** Pure: splits a token into id and MAC, or null when it is not shaped like one. */
export function parseToken(token: string): { id: string; mac: string } | null {
  const m = TOKEN.exec(token);
  return m ? { id: m[1]!, mac: m[2]! } : null;
}

/** Compares the text, not the decoded bytes: base64url decoding ignores the low bits of the last character. */
function sameMac(a: string, b: string): boolean {
  const x = Buffer.from(a, "ascii");
  const y = Buffer.from(b, "ascii");
  return x.length === y.length && timingSafeEqual(x, y);
}

// Marks the record used, once. Refuses a missing record (HSETNX alone would create one).
const CLAIM_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
return redis.call('HSETNX', KEYS[1], 'usedAt', ARGV[1])`;

export class LinkTokens {
  constructor(
    private readonly redis: Redis,
    private readonly secret: string,
    private readonly clock: Clock,
  ) {
    if (secret.length < 32) throw new Error("the link secret must be at least 32 characters");
  }

  async issue(grant: LinkGrant): Promise<string> {
    if (/\n/.test(grant.user) || !/^[1-9][0-9]*$/.test(grant.message)) throw new Error("invalid link grant");
    const id = randomBytes(16).toString("base64url");
    const issuedAt = this.clock.now();
    // Redis forgets the record some time after the token expired. Relative, because Redis counts
    // real time and the clock passed in may not be it (a test's clock runs ahead).
    const keepMs = Math.max(0, grant.expiresAt - issuedAt) + KEEP_AFTER_EXPIRY_MS;
    const key = linkKey(id);
    const results = await this.redis
      .multi()
      .hset(key, {
        user: grant.user,
        message: grant.message,
        revision: String(grant.revision),
        action: grant.action,
        expiresAt: String(grant.expiresAt),
        issuedAt: String(issuedAt),
      })
      .pexpire(key, keepMs)
      .exec();
    const failed = results?.find(([err]) => err);
    if (!results || failed) throw new Error(`link token not stored: ${failed?.[0]?.message ?? "transaction discarded"}`);
    return `${id}.${linkMac(this.secret, id, grant)}`;
  }

  /** Reads and verifies a token without changing anything (GET and HEAD use only this). */
  async check(token: string): Promise<TokenCheck> {
    const parts = parseToken(token);
    if (!parts) return { ok: false, reason: "malformed" };
    const h = await this.redis.hgetall(linkKey(parts.id));
    if (!h.user) {
      // Spend the same work as for a known id, so timing does not tell which ids exist.
      sameMac(parts.mac, linkMac(this.secret, parts.id, { user: "", message: "0", revision: 0, action: "approve", expiresAt: 0 }));
      return { ok: false, reason: "unknown" };
    }
    const grant: StoredGrant = {
      id: parts.id,
      user: h.user,
      message: h.message ?? "",
      revision: Number(h.revision),
      action: h.action as LinkAction,
      expiresAt: Number(h.expiresAt),
      issuedAt: Number(h.issuedAt),
      usedAt: h.usedAt ? Number(h.usedAt) : null,
    };
    if (!LINK_ACTIONS.includes(grant.action) || !sameMac(parts.mac, linkMac(this.secret, parts.id, grant))) return { ok: false, reason: "tampered" };
    if (grant.usedAt !== null) return { ok: false, reason: "used", grant };
    if (this.clock.now() >= grant.expiresAt) return { ok: false, reason: "expired", grant };
    return { ok: true, grant };
  }

  /** Marks a checked token used; false when another request used it first. */
  async claim(grant: StoredGrant): Promise<boolean> {
    return (await this.redis.eval(CLAIM_LUA, 1, linkKey(grant.id), String(this.clock.now()))) === 1;
  }

  /** Gives a claimed token back, when the action failed for a reason that was not the person's (Redis down, a bug). */
  async unclaim(grant: StoredGrant): Promise<void> {
    await this.redis.hdel(linkKey(grant.id), "usedAt");
  }
}
