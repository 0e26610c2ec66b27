/**
 * Hands a prebuilt MIME message to SMTP for one transaction (one envelope, many RCPTs).
 * Two implementations: a pooled SMTP client, and an outbox directory for development.
 */
import { X509Certificate } from "node:crypto";
import { Readable } from "node:stream";
import { readFileSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { rootCertificates } from "node:tls";
import nodemailer from "nodemailer";
import type { NodemailerError } from "nodemailer";
import { parseConnectionUrl } from "nodemailer/lib/shared";
import { ConfigError } from "../config.js";
import { SmtpClientError, SmtpClientPool, UNVERIFIED_CERTIFICATE, type SmtpTlsMode } from "./smtp-client.js";
import { classifySmtpError, isPermanentReply, SmtpSendError, type RecipientRejection, type SendResult } from "./smtp-errors.js";

export { SmtpSendError, SMTP_ERROR_KINDS, type RecipientRejection, type SendResult, type SmtpErrorKind } from "./smtp-errors.js";

export interface Envelope {
  from: string;
  to: string[];
}

export interface MailTransport {
  /**
   * One SMTP transaction. Resolves when the server took the message for the accepted recipients
   * (refused recipients are in `rejected`, including when all were refused). Rejects only with
   * `SmtpSendError`, whose `kind` says whether the transaction may be retried.
   */
  send(envelope: Envelope, raw: Buffer): Promise<SendResult>;
  /** Closes idle connections; a transaction in progress finishes first. Always resolves. */
  close(): Promise<void>;
}

export interface SmtpTransportOptions {
  /** `smtp://user:pass@host:587`, `smtps://host:465`; query parameters become nodemailer options. */
  url: string;
  /** Connections this process keeps open (SMTP_POOL_SIZE). */
  poolSize: number;
  /** Name sent with EHLO (SMTP_EHLO_NAME); unset: the host's FQDN, else our address literal. */
  ehloName?: string;
  /**
   * SMTP_TLS: `required` refuses to send unless the session is TLS with a verified certificate
   * (STARTTLS offered and done, or smtps); `opportunistic` upgrades when offered; `none` never does.
   * Default `opportunistic`.
   */
  tls?: "required" | "opportunistic" | "none";
  /** SMTP_CA_FILE: PEM of a private CA trusted in addition to Node's built-in roots (it replaces NODE_EXTRA_CA_CERTS and the system store for this connection). */
  caFile?: string;
}

/**
 * `smtp://host:port` and `smtps://host:port` (no credentials, no options) use the pipelined client
 * (smtp-client.ts: two round trips per transaction); anything else nodemailer's pool.
 */
export function createSmtpTransport(opts: SmtpTransportOptions): MailTransport {
  const u = new URL(opts.url);
  const plain = (u.protocol === "smtp:" || u.protocol === "smtps:") && !u.username && !u.password && !u.search;
  // Read once, here: a missing file stops the start instead of failing every send.
  const ca = trustedCertificates(opts.caFile);
  return plain ? createPipelinedTransport(u, opts, ca) : createNodemailerTransport(opts, ca);
}

/**
 * SMTP_CA_FILE's certificates beside Node's bundled roots (a `ca` option replaces the default
 * store, it does not add to it); undefined without the file: Node's default store.
 */
function trustedCertificates(caFile: string | undefined): string[] | undefined {
  if (!caFile) return undefined;
  let pem: string;
  try {
    pem = readFileSync(caFile, "utf8");
  } catch (e) {
    throw new ConfigError([`SMTP_CA_FILE: cannot read ${caFile}: ${(e as Error).message}`]);
  }
  try {
    new X509Certificate(pem);
  } catch {
    throw new ConfigError([`SMTP_CA_FILE: ${caFile} holds no PEM certificate`]);
  }
  return [...rootCertificates, pem];
}

function createPipelinedTransport(u: URL, opts: SmtpTransportOptions, ca: string[] | undefined): MailTransport {
  const secure = u.protocol === "smtps:";
  const pool = new SmtpClientPool({
    host: u.hostname.replace(/^\[|\]$/g, ""),
    port: Number(u.port || (secure ? 465 : 25)),
    secure,
    tls: opts.tls ?? "opportunistic",
    ...(ca ? { ca } : {}),
    poolSize: opts.poolSize,
    clientName: opts.ehloName,
  });
  return {
    async send(envelope, raw) {
      try {
        return await pool.send(envelope.from, envelope.to, raw);
      } catch (err) {
        throw new SmtpSendError(classifySmtpError(err, err instanceof SmtpClientError && err.bodySent), err);
      }
    },
    close: () => pool.close(),
  };
}

function createNodemailerTransport(opts: SmtpTransportOptions, ca: string[] | undefined): MailTransport {
  const mode = opts.tls ?? "opportunistic";
  const fromUrl = parseConnectionUrl(opts.url);
  const implicitTls = fromUrl.secure ?? fromUrl.port === 465;
  const transporter = nodemailer.createTransport({
    ...fromUrl,
    // After the URL, so a query parameter cannot undo them.
    ...nodemailerTls(mode, fromUrl.tls, ca),
    pool: true,
    maxConnections: opts.poolSize,
    maxMessages: Infinity,
    // The pool would otherwise re-send a message on its own when a connection drops, even after
    // the body went out; the app owns retries (and counts possible duplicates), see TOOLCHAIN.md.
    maxRequeues: 0,
    // Unset, nodemailer picks like ehloName() in smtp-client.ts (FQDN, else [127.0.0.1]).
    ...(opts.ehloName ? { name: opts.ehloName } : {}),
  });

  // Whether the whole body was handed to the connection, which nodemailer's errors do not say
  // (see smtp-errors.ts). A "stream" plugin adds a process function, as DKIM signing does: its
  // output is the stream the SMTP connection pipes into the DATA encoder once the server said
  // 354, and the encoder writes the terminating dot only after that stream ended. So until it
  // ends the message cannot have been delivered. (Watching our own source stream is not enough:
  // nodemailer buffers a small message in full before MAIL FROM is even sent.)
  const bodies = new WeakMap<object, { tapped: boolean; sent: boolean }>();
  transporter.use("stream", (mail, done) => {
    const state = bodies.get(mail.data.raw as object);
    if (state) {
      state.tapped = true;
      // The input itself is what the connection pipes into the DATA encoder, so its "end" is the
      // same moment a pass-through's would be (a PassThrough and stream.pipeline per transaction
      // cost an AbortController and a DOMException each: 6% of a per-recipient fan-out's CPU).
      mail.message.processFunc((input) => input.once("end", () => (state.sent = true)));
    }
    done();
  });

  return {
    async send(envelope, raw) {
      // A fresh stream per transaction: the key that finds this transaction's state (the same
      // Buffer is sent by many transactions at once).
      const body = Readable.from([raw], { objectMode: false });
      const state = { tapped: false, sent: false };
      bodies.set(body, state);
      try {
        const info = await transporter.sendMail({ envelope: { from: envelope.from, to: envelope.to }, raw: body });
        return { accepted: info.accepted.map(String), rejected: rejections(info.rejected, info.rejectedErrors) };
      } catch (err) {
        const e = err as NodemailerError;
        // Every recipient refused at RCPT TO: a per-recipient outcome, not a transaction failure.
        if (e.code === "EENVELOPE" && e.command === "RCPT TO" && e.rejectedErrors?.length) {
          return { accepted: [], rejected: rejections(e.rejected ?? [], e.rejectedErrors) };
        }
        // TLS is settled before MAIL FROM: nothing of the body went out.
        if (isTlsFailure(e)) throw new SmtpSendError(classifySmtpError(err, false), tlsFailure(e, mode, implicitTls));
        // Untapped (the plugin never saw this body): we cannot know, so assume the worst.
        throw new SmtpSendError(classifySmtpError(err, state.sent || !state.tapped), err);
      }
    },
    async close() {
      transporter.close();
    },
  };
}

/**
 * SMTP_TLS as nodemailer options. `required` overrides whatever the URL said that could weaken it
 * (ignoreTLS, opportunisticTLS, tls.rejectUnauthorized=false); `none` never upgrades;
 * `opportunistic` is nodemailer's default, which the URL may still tune. Certificates are verified
 * in every mode unless the URL itself says otherwise (not in `required`).
 */
function nodemailerTls(mode: SmtpTlsMode, urlTls: Record<string, unknown> | undefined, ca: string[] | undefined) {
  const tls = { ...urlTls, ...(ca ? { ca } : {}) };
  if (mode === "required") return { requireTLS: true, ignoreTLS: false, opportunisticTLS: false, tls: { ...tls, rejectUnauthorized: true } };
  if (mode === "none") return { requireTLS: false, ignoreTLS: true, tls };
  return { tls };
}

/** Node's codes for a certificate that did not verify (an X509 verify error, a wrong name) or a failed handshake. */
const TLS_ERROR_CODES = /^ERR_SSL_|^ERR_TLS_|CERT|CRL|^UNABLE_TO_|^INVALID_CA$|^INVALID_PURPOSE$|^PATH_LENGTH_EXCEEDED$|^HOSTNAME_MISMATCH$/;

/**
 * nodemailer reports a refused STARTTLS as ETLS, but a certificate that did not verify as the
 * socket's error (ESOCKET, Node's code in `originalCode`), and a stalled handshake as ETIMEDOUT.
 */
function isTlsFailure(e: NodemailerError): boolean {
  return e.code === "ETLS" || e.timeoutType === "UPGRADE_TIMEOUT" || (e.code === "ESOCKET" && TLS_ERROR_CODES.test(e.originalCode ?? ""));
}

/** nodemailer's TLS failure, reworded to say which setting made it fatal; its fields (and so its classification) kept. */
function tlsFailure(e: NodemailerError, mode: SmtpTlsMode, implicitTls: boolean): Error {
  const context = implicitTls ? "smtps" : `STARTTLS, SMTP_TLS=${mode}`;
  const unverified = e.code === "ESOCKET" && !e.originalCode?.startsWith("ERR_SSL_");
  const message =
    e.command === "STARTTLS" && e.responseCode !== undefined
      ? `SMTP server did not accept STARTTLS (SMTP_TLS=${mode}): ${e.response ?? e.message}`
      : `TLS with the SMTP server failed (${context}): ${e.message.replace(/^Error initiating TLS - /, "")}${unverified ? ` ${UNVERIFIED_CERTIFICATE}` : ""}`;
  return Object.assign(new Error(message, { cause: e }), { code: e.code, responseCode: e.responseCode, command: e.command, response: e.response });
}

function rejections(addresses: readonly unknown[], errors: readonly NodemailerError[] | undefined): RecipientRejection[] {
  const byAddress = new Map((errors ?? []).map((e) => [e.recipient ?? "", e]));
  return addresses.map((a) => {
    const address = String(a);
    const e = byAddress.get(address);
    const code = e?.responseCode ?? null;
    return {
      address,
      code,
      response: e?.response ?? e?.message ?? "rejected",
      kind: code !== null && !isPermanentReply(code) ? "temporary" : "permanent",
    };
  });
}

/**
 * Development transport: every transaction becomes `<timestamp>-<seq>.eml` (the raw message,
 * unchanged) plus `<timestamp>-<seq>.json` (`{from, to, at}`, the envelope). Accepts everyone.
 */
export function createOutboxTransport(dir: string, now: () => Date = () => new Date()): MailTransport {
  let seq = 0;
  return {
    async send(envelope, raw) {
      try {
        await mkdir(dir, { recursive: true });
        const at = now();
        const stamp = at.toISOString().replace(/[:.]/g, "-");
        for (;;) {
          const base = join(dir, `${stamp}-${String(++seq).padStart(6, "0")}`);
          const meta = JSON.stringify({ from: envelope.from, to: envelope.to, at: at.toISOString() }) + "\n";
          try {
            // `wx` claims the name: several worker processes may share one outbox.
            await writeFile(`${base}.json`, meta, { flag: "wx" });
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === "EEXIST") continue;
            throw err;
          }
          await writeFile(`${base}.eml`, raw, { flag: "wx" });
          return { accepted: [...envelope.to], rejected: [] };
        }
      } catch (err) {
        // A full or unwritable disk is worth retrying, like a 4xx.
        throw new SmtpSendError("temporary", err);
      }
    },
    async close() {},
  };
}
