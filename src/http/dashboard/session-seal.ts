/**
 * Secrets a session keeps in Redis (the OpenID Connect refresh token) are encrypted under a key
 * derived from the session's cookie value, which Redis never holds (only its SHA-256): a read or a
 * backup of Redis gives neither a working session nor a working refresh token.
 * AES-256-GCM, key = HKDF-SHA-256(cookie value, info "airlock session secret").
 */
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from "node:crypto";

const keyOf = (cookieValue: string) => Buffer.from(hkdfSync("sha256", cookieValue, "", "airlock session secret", 32));

export function sealForSession(cookieValue: string, plain: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv("aes-256-gcm", keyOf(cookieValue), iv);
  const body = Buffer.concat([c.update(plain, "utf8"), c.final()]);
  return [iv, c.getAuthTag(), body].map((b) => b.toString("base64url")).join(".");
}

/** The plain text, or null when the sealed value is malformed or was not sealed for this cookie. */
export function unsealForSession(cookieValue: string, sealed: string): string | null {
  const [iv, tag, body] = sealed.split(".").map((p) => Buffer.from(p, "base64url"));
  if (!iv || !tag || !body || iv.length !== 12 || tag.length !== 16) return null;
  try {
    const d = createDecipheriv("aes-256-gcm", keyOf(cookieValue), iv);
    d.setAuthTag(tag);
    return Buffer.concat([d.update(body), d.final()]).toString("utf8");
  } catch {
    return null;
  }
}
