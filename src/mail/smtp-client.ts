/**
 * A small pooled SMTP client for the fan-out's one shape of transaction: a prebuilt message, one
 * sender, many recipients. With PIPELINING (RFC 2920) it writes MAIL FROM, every RCPT TO and DATA
 * at once and reads their replies together, then the body: two round trips per transaction
 * instead of nodemailer's one per command (52 for 50 recipients), and none of its per-message
 * objects (address parsing, MIME node, message id, stream pipelines). The profile of a fan-out
 * showed those as most of the service's CPU (docs/performance.md).
 *
 * It speaks `smtp://` (STARTTLS as SMTP_TLS says: when offered, always, or never) and `smtps://`;
 * URLs with credentials or options use nodemailer instead (transport.ts). Without PIPELINING it
 * sends the same commands one at a time. TLS always verifies the server's certificate: a failed
 * handshake fails the connection, it never falls back to plaintext.
 *
 * Errors carry nodemailer's fields (`code`, `responseCode`, `command`, `response`) so that
 * smtp-errors.ts classifies both clients alike; `bodySent` says whether the whole body had been
 * handed to the socket.
 */
import { connect as netConnect, isIPv4, isIPv6, type Socket } from "node:net";
import { hostname } from "node:os";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";
import { isPermanentReply, type RecipientRejection, type SendResult } from "./smtp-errors.js";

export interface SmtpClientOptions {
  host: string;
  port: number;
  /** Implicit TLS (smtps), whatever `tls` says. */
  secure: boolean;
  /** SMTP_TLS for a plain connection: STARTTLS when offered (default), required, or never. */
  tls?: SmtpTlsMode;
  /** Certificates trusted for the server's; unset: Node's default store. */
  ca?: string[];
  poolSize: number;
  /** Name sent with EHLO (SMTP_EHLO_NAME); unset: see `ehloName`. */
  clientName?: string;
  /** No reply for this long while one is awaited: the connection is given up (default 2 minutes). */
  socketTimeoutMs?: number;
}

export type SmtpTlsMode = "required" | "opportunistic" | "none";

export class SmtpClientError extends Error {
  override name = "SmtpClientError";
  constructor(
    message: string,
    readonly code: string,
    readonly bodySent: boolean,
    readonly command?: string,
    readonly responseCode?: number,
    readonly response?: string,
  ) {
    super(message);
  }
}

interface Reply {
  code: number;
  text: string;
}

/**
 * What follows EHLO (RFC 5321 4.1.1.1: a fully qualified domain name, or else an address
 * literal): the configured name; else this host's name when it is fully qualified; else the
 * address of our end of the connection. Relays that check it (Postfix's
 * `reject_non_fqdn_helo_hostname`, `reject_invalid_helo_hostname`) refuse a bare name.
 */
export function ehloName(configured: string | undefined, host: string, localAddress: string | undefined): string {
  if (configured) return configured;
  if (host.includes(".") && !isIPv4(host) && !isIPv6(host)) return host;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(localAddress ?? "");
  if (mapped) return `[${mapped[1]}]`;
  if (localAddress && isIPv4(localAddress)) return `[${localAddress}]`;
  if (localAddress && isIPv6(localAddress)) return `[IPv6:${localAddress}]`;
  return "[127.0.0.1]";
}

/** One connection: replies are matched to commands in order (FIFO), as pipelining requires. */
class Connection {
  private buf = "";
  private lines: string[] = [];
  private waiting: Array<{ resolve(r: Reply): void; reject(e: Error): void }> = [];
  private failure: Error | null = null;
  pipelining = false;
  private startTls = false;
  closed = false;

  private constructor(
    private socket: Socket | TLSSocket,
    private readonly o: SmtpClientOptions,
  ) {
    this.attach(socket);
  }

  static async open(o: SmtpClientOptions): Promise<Connection> {
    const socket = o.secure ? await handshake(tlsConnect({ ...tlsOptions(o), port: o.port }), o, "smtps", "CONN") : netConnect({ host: o.host, port: o.port });
    const c = new Connection(socket, o);
    try {
      await c.expect(await c.reply(), 220, "CONN");
      await c.hello();
      if (!o.secure) await c.startTlsAsConfigured();
      return c;
    } catch (e) {
      c.destroy();
      throw e;
    }
  }

  private attach(socket: Socket | TLSSocket): void {
    socket.setNoDelay(true);
    socket.setEncoding("latin1");
    socket.setTimeout(this.o.socketTimeoutMs ?? 120_000);
    socket.on("data", this.onData);
    socket.on("timeout", () => {
      this.fail(new SmtpClientError("SMTP server did not answer in time", "ETIMEDOUT", false));
      socket.destroy();
    });
    socket.on("error", (e: Error) => this.fail(new SmtpClientError(e.message, "ESOCKET", false)));
    socket.on("close", () => this.fail(new SmtpClientError("SMTP connection closed", "ECONNECTION", false)));
  }

  private readonly onData = (chunk: string) => {
    this.buf += chunk;
    let nl: number;
    while ((nl = this.buf.indexOf("\n")) >= 0) {
      const line = this.buf.slice(0, nl).replace(/\r$/, "");
      this.buf = this.buf.slice(nl + 1);
      this.lines.push(line);
      // "250-..." continues a reply, "250 ..." (or a bare "250") ends it.
      if (line.length >= 3 && line[3] !== "-") {
        const text = this.lines.join("\n");
        this.lines = [];
        const w = this.waiting.shift();
        if (w) w.resolve({ code: Number(line.slice(0, 3)) || 0, text });
        // A reply nobody asked for (a server closing with 421): the close that follows fails the session.
      }
    }
  };

  /**
   * SMTP_TLS on a plain connection. `required` refuses a server that does not offer STARTTLS
   * (before MAIL FROM: nothing of the message has gone out); a refused STARTTLS or a failed
   * handshake fails the connection in every mode.
   */
  private async startTlsAsConfigured(): Promise<void> {
    const mode = this.o.tls ?? "opportunistic";
    if (mode === "none") return;
    if (!this.startTls) {
      if (mode === "required") throw new SmtpClientError("SMTP server does not offer STARTTLS and SMTP_TLS=required", "ETLS", false, "STARTTLS");
      return;
    }
    const r = await this.command("STARTTLS\r\n");
    if (r.code !== 220) throw new SmtpClientError(`SMTP server refused STARTTLS (SMTP_TLS=${mode}): ${r.text}`, "ETLS", false, "STARTTLS", r.code, r.text);
    await this.upgrade(mode);
    // RFC 3207: what the server said before TLS is forgotten, it is asked again.
    await this.hello();
  }

  private async upgrade(mode: SmtpTlsMode): Promise<void> {
    const plain = this.socket as Socket;
    plain.off("data", this.onData);
    plain.removeAllListeners("timeout");
    plain.removeAllListeners("error");
    plain.removeAllListeners("close");
    const secure = await handshake(tlsConnect({ ...tlsOptions(this.o), socket: plain }), this.o, `STARTTLS, SMTP_TLS=${mode}`, "STARTTLS");
    this.socket = secure;
    this.attach(secure);
  }

  private async hello(): Promise<void> {
    const r = await this.command(`EHLO ${ehloName(this.o.clientName, hostname(), this.socket.localAddress)}\r\n`);
    await this.expect(r, 250, "EHLO");
    const caps = r.text.split("\n").map((l) => l.slice(4).trim().toUpperCase());
    this.pipelining = caps.includes("PIPELINING");
    this.startTls = caps.includes("STARTTLS");
  }

  private async expect(r: Reply, code: number, command: string): Promise<void> {
    if (r.code !== code) throw new SmtpClientError(`${command}: ${r.text}`, "EPROTOCOL", false, command, r.code, r.text);
  }

  private reply(): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  private command(line: string): Promise<Reply> {
    const r = this.reply();
    this.socket.write(line);
    return r;
  }

  /** Writes the commands (all at once when pipelining) and answers their replies in order. */
  private async commands(lines: string[]): Promise<Reply[]> {
    if (this.pipelining) {
      const replies = lines.map(() => this.reply());
      this.socket.write(lines.join(""));
      return Promise.all(replies);
    }
    const out: Reply[] = [];
    for (const l of lines) out.push(await this.command(l));
    return out;
  }

  /**
   * One transaction. Resolves with the accepted and refused recipients; rejects with an
   * SmtpClientError when the transaction as a whole failed (the connection is then discarded).
   */
  async transaction(from: string, to: string[], body: Buffer): Promise<SendResult> {
    let bodySent = false;
    try {
      const replies = await this.commands([`MAIL FROM:<${from}>\r\n`, ...to.map((a) => `RCPT TO:<${a}>\r\n`), "DATA\r\n"]);
      const mail = replies[0]!;
      const data = replies[replies.length - 1]!;
      if (mail.code >= 300) {
        if (data.code === 354) await this.abortData();
        throw new SmtpClientError(`MAIL FROM: ${mail.text}`, "EENVELOPE", false, "MAIL FROM", mail.code, mail.text);
      }
      const accepted: string[] = [];
      const rejected: RecipientRejection[] = [];
      to.forEach((address, i) => {
        const r = replies[i + 1]!;
        if (r.code >= 200 && r.code < 300) accepted.push(address);
        else rejected.push({ address, code: r.code, response: r.text, kind: isPermanentReply(r.code) ? "permanent" : "temporary" });
      });
      if (accepted.length === 0) {
        // Every recipient refused: per-recipient outcomes. A server that still said 354 gets an empty message ended at once.
        if (data.code === 354) await this.abortData();
        // The server still holds the MAIL FROM: clear it, or the next MAIL FROM is a 503 "nested MAIL".
        await this.expect(await this.command("RSET\r\n"), 250, "RSET");
        return { accepted, rejected };
      }
      if (data.code !== 354) throw new SmtpClientError(`DATA: ${data.text}`, "EMESSAGE", false, "DATA", data.code, data.text);
      const final = this.reply();
      final.catch(() => {}); // awaited below once the body is written; a failure before that is reported by the write
      await new Promise<void>((resolve, reject) => this.socket.write(body, (e) => (e ? reject(new SmtpClientError(e.message, "ESOCKET", false)) : resolve())));
      bodySent = true;
      const r = await final;
      if (r.code >= 300) throw new SmtpClientError(`DATA: ${r.text}`, "EMESSAGE", true, "DATA", r.code, r.text);
      return { accepted, rejected };
    } catch (e) {
      this.destroy();
      if (e instanceof SmtpClientError) throw bodySent && !e.bodySent ? new SmtpClientError(e.message, e.code, true, e.command, e.responseCode, e.response) : e;
      throw new SmtpClientError((e as Error).message, "ESOCKET", bodySent);
    }
  }

  /** Ends a DATA the server opened although nothing can be delivered: an empty body, reply ignored. */
  private async abortData(): Promise<void> {
    await this.command(".\r\n");
  }

  private fail(e: Error): void {
    if (!this.failure) this.failure = e;
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.reject(this.failure);
  }

  destroy(): void {
    this.fail(new SmtpClientError("SMTP connection closed", "ECONNECTION", false));
    this.socket.destroy();
  }

  async quit(): Promise<void> {
    if (this.closed) return;
    await Promise.race([this.command("QUIT\r\n").catch(() => undefined), new Promise((r) => setTimeout(r, 1000).unref())]); // a polite QUIT, bounded
    this.destroy();
  }
}

/** Appended to a certificate that did not verify: what it is checked against. */
export const UNVERIFIED_CERTIFICATE = "(the certificate must chain to Node's built-in CAs, or with SMTP_CA_FILE set to those or that file's (not NODE_EXTRA_CA_CERTS then), and name the host)";

/**
 * Verified TLS to `o.host`: its certificate must chain to `o.ca` (else Node's default store) and
 * name the host. SNI only for a name (RFC 6066 forbids an address; Node warns).
 */
function tlsOptions(o: SmtpClientOptions): ConnectionOptions {
  return { host: o.host, ...(isIPv4(o.host) || isIPv6(o.host) ? {} : { servername: o.host }), ...(o.ca ? { ca: o.ca } : {}), rejectUnauthorized: true };
}

/**
 * Resolves with the socket once the handshake is done and the certificate verified, else rejects
 * with an ETLS error saying so. Data the server sends meanwhile waits in the paused socket.
 */
function handshake(socket: TLSSocket, o: SmtpClientOptions, context: string, command: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const done = () => {
      socket.off("timeout", onTimeout).off("error", onError).off("close", onClose).off("secureConnect", onSecure);
    };
    const fail = (message: string) => {
      done();
      socket.on("error", () => {}); // whatever the dying socket still reports, this is the failure
      socket.destroy();
      reject(new SmtpClientError(`TLS with the SMTP server failed (${context}): ${message}`, "ETLS", false, command));
    };
    const onTimeout = () => fail("no handshake in time");
    // authorizationError: the certificate did not verify (as opposed to a handshake that failed).
    const onError = (e: Error) => fail(socket.authorizationError ? `${e.message} ${UNVERIFIED_CERTIFICATE}` : e.message);
    const onClose = () => fail("connection closed");
    const onSecure = () => {
      done();
      resolve(socket);
    };
    socket.setTimeout(o.socketTimeoutMs ?? 120_000);
    socket.on("timeout", onTimeout).on("error", onError).on("close", onClose).on("secureConnect", onSecure);
  });
}

/**
 * The bytes that follow DATA's 354: CRLF line ends (bare CR or LF become CRLF), a dot doubled at
 * the start of a line, the terminating `.`. Computed once per message and cached by Buffer.
 */
const stuffed = new WeakMap<Buffer, Buffer>();
export function dataBody(raw: Buffer): Buffer {
  const cached = stuffed.get(raw);
  if (cached) return cached;
  const out: number[] = [];
  let prev = -1; // the start of the body counts as a line start
  for (let i = 0; i < raw.length; i++) {
    const b = raw[i]!;
    if (prev === 0x0d && b !== 0x0a) out.push(0x0a), (prev = 0x0a);
    if (b === 0x0a && prev !== 0x0d) out.push(0x0d);
    if (b === 0x2e && (prev === 0x0a || prev === -1)) out.push(0x2e);
    out.push(b);
    prev = b;
  }
  if (prev === 0x0d) out.push(0x0a);
  else if (prev !== 0x0a && prev !== -1) out.push(0x0d, 0x0a);
  out.push(0x2e, 0x0d, 0x0a);
  const buf = Buffer.from(out);
  stuffed.set(raw, buf);
  return buf;
}

/** Up to `poolSize` connections, opened on demand and kept; a transaction waits for a free one. */
export class SmtpClientPool {
  private readonly idle: Connection[] = [];
  private readonly queue: Array<(c: Connection | null) => void> = [];
  private open = 0;
  private closing = false;

  constructor(private readonly o: SmtpClientOptions) {}

  async send(from: string, to: string[], raw: Buffer): Promise<SendResult> {
    const c = await this.acquire();
    let ok = false;
    try {
      const r = await c.transaction(from, to, dataBody(raw));
      ok = true;
      return r;
    } finally {
      this.release(c, ok);
    }
  }

  private async acquire(): Promise<Connection> {
    if (this.closing) throw new SmtpClientError("the SMTP pool is closed", "ECONNECTION", false);
    for (;;) {
      const c = this.idle.pop();
      if (!c) break;
      if (!c.closed) return c;
      this.open--;
    }
    if (this.open < this.o.poolSize) {
      this.open++;
      try {
        return await Connection.open(this.o);
      } catch (e) {
        this.open--;
        this.handOver(null);
        throw e instanceof SmtpClientError ? e : new SmtpClientError((e as Error).message, "ECONNECTION", false);
      }
    }
    const c = await new Promise<Connection | null>((resolve) => this.queue.push(resolve));
    return c ?? this.acquire();
  }

  private release(c: Connection, ok: boolean): void {
    if (!ok || c.closed || this.closing) {
      this.open--;
      c.destroy();
      this.handOver(null);
      return;
    }
    this.handOver(c);
  }

  /** Gives a connection (or a free slot: null) to the next waiting transaction, else keeps it idle. */
  private handOver(c: Connection | null): void {
    const next = this.queue.shift();
    if (next) next(c);
    else if (c) this.idle.push(c);
  }

  async close(): Promise<void> {
    this.closing = true;
    for (const w of this.queue.splice(0)) w(null);
    const idle = this.idle.splice(0);
    this.open -= idle.length;
    await Promise.all(idle.map((c) => c.quit()));
  }
}
