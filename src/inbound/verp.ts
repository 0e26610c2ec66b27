/**
 * VERP addresses of staged sends (issue 16): the return path that names one recipient of one
 * message, and the Reply-To that names one message.
 *
 *   bounce+<messageId>.<index>.<tag>@<RETURN_PATH_DOMAIN>   index in base 36 (0..2^32-1: ≤ 7 chars)
 *   reply+<messageId>.<token>.<tag>@<RETURN_PATH_DOMAIN>    token: [0-9a-z]{1,16}, chosen by the caller
 *
 * The tag is HMAC-SHA-256(secret, kind, messageId, index|token), its first 64 bits in lower-case
 * base 32 (13 characters). Why a tag: every recipient sees their own return path (Return-Path
 * header), and indexes are consecutive, so without one anybody could mail "bounces" for any
 * recipient of any message and halt a send, or mark people bounced who were not. With it, only an
 * address Airlock issued is accepted (2^64 guesses, against a rate-limited listener). The token of
 * a reply address is not a secret (the whole audience sees the same Reply-To); the tag only keeps
 * people from inventing reply addresses for messages they never received.
 *
 * Everything in a local part is lower-case letters, digits, "+", "." and "-": some MTAs change the
 * case of local parts, so parsing folds case and still checks the exact tag. The longest local part
 * ("reply+" + 24 + "." + 16 + "." + 13 = 61 octets) stays within RFC 5321's 64.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

export type VerpAddress =
  | { kind: "bounce"; messageId: string; index: number }
  | { kind: "reply"; messageId: string; token: string };

export type VerpParse =
  | ({ ok: true } & VerpAddress)
  | { ok: false; reason: "syntax" | "foreign-domain" | "unknown-local-part" | "tag" };

/** Message ids as the store makes them (decimal today); no "." (the separator) and no upper case. */
const MESSAGE_ID = /^[0-9a-z][0-9a-z_-]{0,23}$/;
const TOKEN = /^[0-9a-z]{1,16}$/;
/** Canonical base 36: no leading zero, so one index has exactly one address. */
const INDEX36 = /^(0|[1-9a-z][0-9a-z]{0,6})$/;
const TAG_CHARS = 13;
const BOUNCE = /^bounce\+([0-9a-z_-]{1,24})\.([0-9a-z]{1,7})\.([a-z2-7]{13})$/;
const REPLY = /^reply\+([0-9a-z_-]{1,24})\.([0-9a-z]{1,16})\.([a-z2-7]{13})$/;
/** RFC 5321 §4.5.3.1: local part ≤ 64 octets, domain ≤ 255, a path ≤ 256 with its brackets. */
const MAX_LOCAL = 64;
const MAX_ADDRESS = 254;
const DOMAIN = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export interface VerpOptions {
  /** RETURN_PATH_DOMAIN: the domain the inbound listener receives for (ASCII, compared case-insensitively). */
  domain: string;
  /** At least 32 characters; a secret of its own, or one derived from another with a label. */
  secret: string;
}

export class Verp {
  readonly domain: string;
  private readonly secret: string;

  constructor(o: VerpOptions) {
    const domain = o.domain.toLowerCase();
    if (!DOMAIN.test(domain)) throw new Error(`invalid return path domain ${JSON.stringify(o.domain)}`);
    if (o.secret.length < 32) throw new Error("the VERP secret must be at least 32 characters");
    this.domain = domain;
    this.secret = o.secret;
  }

  bounceAddress(messageId: string, index: number): string {
    checkMessageId(messageId);
    if (!Number.isInteger(index) || index < 0 || index > 0xffffffff) throw new RangeError(`recipient index ${index} outside 0..2^32-1`);
    const idx = index.toString(36);
    return `bounce+${messageId}.${idx}.${this.tag("bounce", messageId, idx)}@${this.domain}`;
  }

  replyAddress(messageId: string, token: string): string {
    checkMessageId(messageId);
    if (!TOKEN.test(token)) throw new RangeError(`reply token must be 1-16 of [0-9a-z], got ${JSON.stringify(token)}`);
    return `reply+${messageId}.${token}.${this.tag("reply", messageId, token)}@${this.domain}`;
  }

  /** Parses an address as an SMTP envelope gives it (no angle brackets, no display name). Never throws. */
  parse(address: string): VerpParse {
    if (typeof address !== "string" || address.length > MAX_ADDRESS) return { ok: false, reason: "syntax" };
    const at = address.lastIndexOf("@");
    if (at <= 0 || at === address.length - 1) return { ok: false, reason: "syntax" };
    const local = address.slice(0, at).toLowerCase();
    const domain = address.slice(at + 1).toLowerCase();
    if (domain !== this.domain) return { ok: false, reason: DOMAIN.test(domain) ? "foreign-domain" : "syntax" };
    if (Buffer.byteLength(local) > MAX_LOCAL) return { ok: false, reason: "unknown-local-part" };
    const b = BOUNCE.exec(local);
    if (b) {
      const [, messageId, idx, tag] = b as unknown as [string, string, string, string];
      if (!MESSAGE_ID.test(messageId) || !INDEX36.test(idx)) return { ok: false, reason: "unknown-local-part" };
      const index = parseInt(idx, 36);
      if (index > 0xffffffff) return { ok: false, reason: "unknown-local-part" };
      if (!sameText(tag, this.tag("bounce", messageId, idx))) return { ok: false, reason: "tag" };
      return { ok: true, kind: "bounce", messageId, index };
    }
    const r = REPLY.exec(local);
    if (r) {
      const [, messageId, token, tag] = r as unknown as [string, string, string, string];
      if (!MESSAGE_ID.test(messageId)) return { ok: false, reason: "unknown-local-part" };
      if (!sameText(tag, this.tag("reply", messageId, token))) return { ok: false, reason: "tag" };
      return { ok: true, kind: "reply", messageId, token };
    }
    return { ok: false, reason: "unknown-local-part" };
  }

  private tag(kind: "bounce" | "reply", messageId: string, part: string): string {
    const mac = createHmac("sha256", this.secret).update(`airlock-verp-v1\n${kind}\n${messageId}\n${part}`).digest();
    return base32(mac.subarray(0, 8)).slice(0, TAG_CHARS);
  }
}

function checkMessageId(id: string): void {
  if (!MESSAGE_ID.test(id)) throw new RangeError(`message id must be 1-24 of [0-9a-z_-] (starting alphanumeric), got ${JSON.stringify(id)}`);
}

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

/** RFC 4648 base 32, lower case, no padding. */
function base32(bytes: Uint8Array): string {
  let out = "";
  let bits = 0;
  let value = 0;
  for (const b of bytes) {
    value = (value << 8) | b;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
    value &= (1 << bits) - 1;
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/** Constant-time comparison of the tag texts (equal length is known from the pattern). */
function sameText(a: string, b: string): boolean {
  const x = Buffer.from(a, "ascii");
  const y = Buffer.from(b, "ascii");
  return x.length === y.length && timingSafeEqual(x, y);
}
