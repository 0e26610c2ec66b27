/**
 * The two links of the audit trail, as pure functions (the Lua scripts write the first, the
 * sealer the second, audit/verify.ts checks both).
 *
 * 1. The hash chain, written by the script that makes the change, atomically with it
 *    (store/lua/prologue.lua `audit()`, audiences/audience-scripts.ts `auditAudience`):
 *    `hash = SHA-1(prev + "\n" + fields)`. Lua in Redis has no keyed hash, so this link is unkeyed:
 *    it catches an accident or a careless edit, not a forger who can write to Redis (they can
 *    recompute it).
 * 2. The seal, written moments later by any Airlock process holding AUDIT_SECRET (audit/sealer.ts):
 *    `seal = HMAC-SHA-256(AUDIT_SECRET, previous seal + "\n" + entry id + "\n" + every field)`.
 *    The secret never enters Redis, so someone who can write to Redis but does not hold the
 *    secret cannot change, remove or insert a sealed entry without the seals showing it.
 */
import { createHash, createHmac } from "node:crypto";

/** The fields of an audit entry, as Redis stores them (all strings). */
export type AuditFields = Record<string, string>;

/** An entry's fields from a stream read's flat [field, value, field, value, ...] list. */
export function flatFields(flat: readonly string[]): AuditFields {
  const f: AuditFields = {};
  for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]!] = flat[i + 1]!;
  return f;
}

/** The fields both links cover, in this order. */
const BODY = ["message", "revision", "actor", "action", "from", "to", "at", "detail"] as const;

export function entryHash(prev: string, f: AuditFields): string {
  const body = BODY.map((k) => f[k]).join("\n");
  return createHash("sha1").update(`${prev}\n${body}`).digest("hex");
}

/** The seal of entry `id` after the seal `prevSeal` ("" for the first entry). */
export function entrySeal(secret: string, prevSeal: string, id: string, f: AuditFields): string {
  const h = createHmac("sha256", secret).update(`${prevSeal}\n${id}`);
  // Each field length-prefixed: no choice of field values can make two different entries read alike.
  for (const k of [...BODY, "prev", "hash"]) {
    const v = f[k] ?? "";
    h.update(`\n${Buffer.byteLength(v)}:${v}`);
  }
  return h.digest("hex");
}
