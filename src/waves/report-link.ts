/**
 * The "Report a problem with this message" link of a staged send's early waves: one link per
 * message (the mail is built once for everyone, so it cannot name the recipient), signed so that
 * nobody can make report links for messages they never received.
 *
 *   <PUBLIC_URL>/report/<messageId>.<tag>    tag: HMAC-SHA-256(secret, "airlock-report-v1", id), 22 base64url chars
 *
 * GET shows a confirmation page and changes nothing (mail scanners open every link); POST counts.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

const TOKEN = /^([1-9][0-9]{0,15})\.([A-Za-z0-9_-]{22})$/;

export class ReportLinks {
  constructor(
    private readonly secret: string,
    private readonly publicUrl: string,
  ) {
    if (secret.length < 32) throw new Error("the report link secret must be at least 32 characters");
  }

  token(messageId: string): string {
    return `${messageId}.${this.tag(messageId)}`;
  }

  url(messageId: string): string {
    return `${this.publicUrl.replace(/\/+$/, "")}/report/${this.token(messageId)}`;
  }

  /** The message id a token names, or null when it is malformed or not one Airlock issued. */
  verify(token: string): string | null {
    const m = TOKEN.exec(token);
    if (!m) return null;
    const [, id, tag] = m as unknown as [string, string, string];
    const want = Buffer.from(this.tag(id));
    const got = Buffer.from(tag);
    return got.length === want.length && timingSafeEqual(got, want) ? id : null;
  }

  private tag(messageId: string): string {
    return createHmac("sha256", this.secret).update(`airlock-report-v1\n${messageId}`).digest("base64url").slice(0, 22);
  }
}
