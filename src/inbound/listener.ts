/**
 * Airlock's inbound SMTP listener (issue 16): receives delivery status notifications at VERP
 * bounce addresses and replies at reply addresses, and hands what they say to a handler.
 *
 * Bounded, and never a relay: every refusal happens at SMTP time, with a clear reply.
 * - RCPT outside RETURN_PATH_DOMAIN: 550 5.7.1 (relaying denied). RCPT at the domain that is not an
 *   address Airlock issued (unknown shape, bad tag): 550 5.1.1. At most MAX_RECIPIENTS per mail.
 * - A mail over `maxBytes`: 552 at MAIL FROM when the client declares SIZE, else after DATA.
 * - A client over its rate or its open connections (client-rate.ts): 421 at connect, 450 at MAIL FROM.
 * - No AUTH (nothing here needs it, and it would invite password guessing); STARTTLS only when a
 *   certificate is configured.
 * - A mail that cannot be parsed: 550 5.6.0. A handler that throws or does not answer within
 *   `handlerTimeoutMs`: 451 4.3.0, so the sending MTA keeps the mail and tries again later.
 *
 * Handlers must be idempotent: a 451 makes the whole mail come again, including the recipients
 * whose handler had already succeeded, and MTAs may deliver the same DSN twice anyway. Bounces
 * are keyed by (messageId, index); replies carry the mail's own Message-ID for that.
 */
import type { AddressInfo } from "node:net";
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer, type SMTPServerAddress, type SMTPServerDataStream, type SMTPServerSession } from "smtp-server";
import { classifyReply, replyExcerpt } from "./auto-reply.js";
import { oneLine } from "./bounded-text.js";
import { ClientRate, type ClientRateOptions } from "./client-rate.js";
import { dsnOfParsed, mainRecipient, type DsnOutcome } from "./dsn.js";
import type { Verp } from "./verp.js";

export interface BounceEvent {
  messageId: string;
  /** The recipient's index in the frozen audience, from the VERP address (not from the DSN body). */
  index: number;
  /** "failed" or "delayed" (a DSN saying "delivered" is not a bounce and is not reported). */
  outcome: Exclude<DsnOutcome, "delivered">;
  action: string;
  status: string;
  permanent: boolean;
  diagnostic?: string;
  /** What the DSN names, for the evidence (the index is what counts). */
  finalRecipient?: string;
  /** Message-ID of the DSN itself. */
  mailMessageId?: string;
}

export interface ReplyEvent {
  messageId: string;
  /** The reply address's token (see Verp.replyAddress). */
  token: string;
  automatic: boolean;
  reasons: string[];
  /** The reply's From address, else the envelope sender ("" for <>). */
  from: string;
  excerpt: string;
  /** Message-ID of the reply, to count a re-delivered reply once. */
  mailMessageId?: string;
}

/** Mail that was accepted (250) but says nothing to count: logged, not an error. */
export interface DiscardEvent {
  kind: "bounce" | "reply";
  messageId: string;
  reason: string;
}

export interface InboundHandler {
  onBounce(e: BounceEvent): void | Promise<void>;
  onReply(e: ReplyEvent): void | Promise<void>;
  onDiscard?(e: DiscardEvent): void;
}

export interface InboundLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface InboundListenerOptions {
  verp: Verp;
  handler: InboundHandler;
  /** INBOUND_SMTP_PORT; 0 picks a free one (tests). */
  port: number;
  /** Default all interfaces: MTAs on the internet deliver DSNs here. */
  host?: string;
  /** Name in the greeting. Default the return path domain. */
  name?: string;
  /** Largest mail accepted. Default 256 kB: a DSN with the original's headers is a few kB, and a
   * Postfix/Exchange DSN returning the whole original (RET=FULL) of a house-template mail ~100 kB. */
  maxBytes?: number;
  rate?: ClientRateOptions;
  /** Connections open at once, all clients. Default 100. */
  maxClients?: number;
  /** Longest a handler may take before the mail is answered 451. Default 15 s: MTAs wait minutes
   * for the reply to DATA (RFC 5321 §4.5.3.2.6), but a stuck store must not hold connections open. */
  handlerTimeoutMs?: number;
  /** Idle time before a connection is dropped. Default 60 s. */
  socketTimeoutMs?: number;
  /** PEM key and certificate: STARTTLS is offered only with them. */
  tls?: { key: string | Buffer; cert: string | Buffer };
  logger?: InboundLogger;
}

export interface InboundListener {
  port: number;
  /** Stops listening, gives open sessions a second to finish, then cuts them. Always resolves. */
  close(): Promise<void>;
}

export const DEFAULT_MAX_BYTES = 256 * 1024;
/** Recipients per mail: a DSN goes to one return path; a few leave room for a reply to several of ours. */
export const MAX_RECIPIENTS = 10;

/** An SMTP reply carried by an error (smtp-server sends `responseCode` and the message). */
function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code });
}

const silent: InboundLogger = { info() {}, warn() {} };

export async function startInboundListener(o: InboundListenerOptions): Promise<InboundListener> {
  const maxBytes = o.maxBytes ?? DEFAULT_MAX_BYTES;
  const handlerTimeoutMs = o.handlerTimeoutMs ?? 15_000;
  const log = o.logger ?? silent;
  const rate = new ClientRate(o.rate);
  /** Sessions that `rate.connect` accepted, so only those release a connection slot on close. */
  const counted = new Set<string>();

  const server = new SMTPServer({
    name: o.name ?? o.verp.domain,
    banner: "Airlock inbound (bounces and replies only)",
    size: maxBytes,
    rejectOversized: true,
    maxRecipients: MAX_RECIPIENTS,
    maxClients: o.maxClients ?? 100,
    socketTimeout: o.socketTimeoutMs ?? 60_000,
    // On close, sessions get this long to finish before they are cut (close() must not hang).
    closeTimeout: 1_000,
    authOptional: true,
    disabledCommands: o.tls ? ["AUTH"] : ["AUTH", "STARTTLS"],
    hideSTARTTLS: !o.tls,
    ...(o.tls ? { key: o.tls.key, cert: o.tls.cert } : {}),
    // A PTR lookup per connection gains nothing here and would wait on DNS.
    disableReverseLookup: true,
    logger: false,

    onConnect(session, callback) {
      guarded(callback, () => {
        if (!rate.connect(session.remoteAddress)) {
          log.warn(`inbound ${session.remoteAddress} refused: over its rate or connections`);
          throw smtpError(421, "4.7.0 Too many connections or messages from your address, try again later");
        }
        counted.add(session.id);
      });
    },

    onClose(session) {
      if (counted.delete(session.id)) rate.disconnect(session.remoteAddress);
    },

    onMailFrom(_address, session, callback) {
      guarded(callback, () => {
        if (!rate.take(session.remoteAddress)) {
          log.warn(`inbound ${session.remoteAddress} transaction refused: over its rate`);
          throw smtpError(450, "4.7.1 Too many messages from your address, try again later");
        }
      });
    },

    onRcptTo(address: SMTPServerAddress, _session, callback) {
      guarded(callback, () => {
        const p = o.verp.parse(address.address);
        if (p.ok) return;
        if (p.reason === "foreign-domain") throw smtpError(550, "5.7.1 Relaying denied: this server accepts mail for its own domain only");
        throw smtpError(550, "5.1.1 No such recipient here");
      });
    },

    onData(stream: SMTPServerDataStream, session: SMTPServerSession, callback) {
      const chunks: Buffer[] = [];
      let size = 0;
      stream.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size <= maxBytes) chunks.push(chunk); // past the limit keep reading (to answer 552) but not storing
      });
      stream.on("error", () => {}); // a dropped connection ends the session; nothing to answer
      stream.on("end", () => {
        if (stream.sizeExceeded || size > maxBytes) return callback(smtpError(552, "5.3.4 Message too big for this server"));
        handleMail(Buffer.concat(chunks), session).then(
          () => callback(),
          (err: Error & { responseCode?: number }) => {
            if (err.responseCode && err.responseCode < 500) log.warn(`inbound mail from ${session.remoteAddress} deferred: ${err.message}`);
            callback(err.responseCode ? err : smtpError(451, "4.3.0 Temporary failure, try again later"));
          },
        );
      });
    },
  });

  // An 'error' event without a listener would end the process; a socket error is one session's end.
  server.on("error", (err: Error) => log.warn(`inbound SMTP error: ${err.message}`));

  async function handleMail(raw: Buffer, session: SMTPServerSession): Promise<void> {
    let parsed: ParsedMail;
    try {
      parsed = await simpleParser(raw, { keepDeliveryStatus: true, maxHtmlLengthToParse: maxBytes, skipImageLinks: true, skipTextLinks: true });
    } catch {
      throw smtpError(550, "5.6.0 The message could not be parsed");
    }
    const envelopeFrom = session.envelope.mailFrom ? session.envelope.mailFrom.address : "";
    const seen = new Set<string>();
    for (const rcpt of session.envelope.rcptTo) {
      const p = o.verp.parse(rcpt.address);
      if (!p.ok) continue; // refused at RCPT already
      const key = p.kind === "bounce" ? `b${p.messageId}.${p.index}` : `r${p.messageId}.${p.token}`;
      if (seen.has(key)) continue;
      seen.add(key);
      if (p.kind === "bounce") await bounce(p.messageId, p.index, parsed, envelopeFrom);
      else await reply(p.messageId, p.token, parsed, envelopeFrom);
    }
  }

  async function bounce(messageId: string, index: number, parsed: ParsedMail, envelopeFrom: string): Promise<void> {
    const dsn = dsnOfParsed(parsed);
    // Mail to a return path without a DSN is mostly an auto-responder answering the envelope
    // sender (RFC 3834 §4): accepted and dropped, never counted as a bounce.
    const r = dsn && mainRecipient(dsn);
    if (!r) return discard({ kind: "bounce", messageId, reason: classifyReply(parsed, envelopeFrom).automatic ? "an automatic reply to the return path" : "no delivery status part" });
    if (r.outcome === "delivered") return discard({ kind: "bounce", messageId, reason: `a ${r.action} notification` });
    const e: BounceEvent = { messageId, index, outcome: r.outcome, action: r.action, status: r.status, permanent: r.permanent };
    if (r.diagnostic) e.diagnostic = r.diagnostic;
    if (r.finalRecipient) e.finalRecipient = r.finalRecipient;
    if (parsed.messageId) e.mailMessageId = oneLine(parsed.messageId, 200);
    await callHandler(() => o.handler.onBounce(e));
    log.info(`inbound bounce message ${messageId} recipient ${index}: ${r.outcome} ${r.status}`);
  }

  async function reply(messageId: string, token: string, parsed: ParsedMail, envelopeFrom: string): Promise<void> {
    const verdict = classifyReply(parsed, envelopeFrom);
    const from = parsed.from?.value[0]?.address ?? envelopeFrom;
    const e: ReplyEvent = { messageId, token, automatic: verdict.automatic, reasons: verdict.reasons, from: oneLine(from, 254), excerpt: replyExcerpt(parsed) };
    if (parsed.messageId) e.mailMessageId = oneLine(parsed.messageId, 200);
    await callHandler(() => o.handler.onReply(e));
    log.info(`inbound reply to message ${messageId}: ${verdict.automatic ? `automatic (${verdict.reasons[0]})` : "human"}`);
  }

  function discard(e: DiscardEvent): void {
    try {
      o.handler.onDiscard?.(e);
    } catch {
      // only a log hook: its failure must not refuse the mail
    }
    log.info(`inbound ${e.kind} for message ${e.messageId} dropped: ${e.reason}`);
  }

  /** Runs a handler with a deadline; any failure becomes a 451 (the MTA keeps the mail and retries). */
  async function callHandler(fn: () => void | Promise<void>): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        Promise.resolve().then(fn),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`handler gave no answer within ${handlerTimeoutMs} ms`)), handlerTimeoutMs);
        }),
      ]);
    } catch (err) {
      log.warn(`inbound handler failed: ${(err as Error)?.message ?? String(err)}`);
      throw smtpError(451, "4.3.0 Temporary failure, try again later");
    } finally {
      clearTimeout(timer);
    }
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.server.once("error", onError);
    server.listen(o.port, o.host, () => {
      server.server.off("error", onError);
      resolve();
    });
  });
  const port = (server.server.address() as AddressInfo).port;
  log.info(`inbound SMTP listening on port ${port} for ${o.verp.domain}`);

  return {
    port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Runs a hook body; a thrown SMTP error becomes its reply, anything else a 451 (never a crash). */
function guarded(callback: (err?: Error | null) => void, body: () => void): void {
  let error: Error | null = null;
  try {
    body();
  } catch (err) {
    error = (err as { responseCode?: number })?.responseCode ? (err as Error) : smtpError(451, "4.3.0 Temporary failure, try again later");
  }
  callback(error);
}
