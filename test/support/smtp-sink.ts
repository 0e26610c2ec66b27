/**
 * A real in-process SMTP server that records every transaction, parsed with mailparser.
 * `behaviour` hooks let a test inject rejections, temporary failures and dropped connections.
 * Without options it offers no STARTTLS; `tls` gives it a certificate (`testCertificates()`).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from "smtp-server";
import { freePort } from "../../src/infra/redis-process.js";

export interface Received {
  at: number;
  from: string;
  to: string[];
  mail: ParsedMail;
  /** Whether the session was TLS (smtps, or after STARTTLS) when the message arrived. */
  secure: boolean;
  /** The connection (SMTP session id, see `SmtpSink.connections`) it came on. */
  connection?: string;
  /** When its transaction began (MAIL FROM): the moment its recipients were handed to SMTP. */
  startedAt?: number;
}

export interface SinkTls {
  /** PEM private key and certificate the server presents. */
  key: string;
  cert: string;
  /** TLS from the first byte (an smtps:// URL) instead of STARTTLS. */
  implicit?: boolean;
  /** Accept STARTTLS without announcing it after EHLO (smtp-server's hideSTARTTLS). */
  hideStartTls?: boolean;
}

export interface SinkOptions {
  tls?: SinkTls;
}

export interface SinkBehaviour {
  /** Reject one RCPT: return e.g. `{code: 550, message: "no such user"}`. */
  rcpt?(address: string): { code: number; message: string } | null;
  /**
   * Fail the DATA of a transaction, or return "drop" to cut the connection after the body. May
   * answer later (a promise): the transaction stays open until then, which lets a test hold
   * transactions in flight deterministically.
   */
  data?(to: string[], raw: Buffer, client?: SinkClient): DataVerdict | Promise<DataVerdict>;
}

type DataVerdict = { code: number; message: string } | "drop" | null;

/** Who sent a transaction: its connection, and the name the client gave with EHLO (SMTP_EHLO_NAME). */
export interface SinkClient {
  connection: string;
  ehlo: string;
}

/** One client connection as the sink saw it. */
export interface SinkConnection {
  id: string;
  /** The EHLO name: tells apart the processes that send, when each is given its own SMTP_EHLO_NAME. */
  ehlo: string;
  remotePort: number;
  openedAt: number;
  closedAt?: number;
}

/** One SMTP transaction, from its MAIL FROM to its end, or to the loss of its connection. */
export interface SinkTransaction {
  connection: string;
  ehlo: string;
  startedAt: number;
  /** Its accepted recipients (known from DATA on, or when its connection went away). */
  to: string[];
  /** DATA began (354): the body was on its way. */
  dataAt?: number;
  /** The whole body had arrived. */
  bodyAt?: number;
  endedAt?: number;
  /** The body's Message-ID and In-Reply-To headers (as `<…>`), once the whole body had arrived. */
  messageId?: string;
  inReplyTo?: string;
  /** `reset`: abandoned by RSET or a new MAIL FROM (every recipient refused). */
  outcome: "open" | "delivered" | "refused" | "dropped" | "reset";
  /**
   * The client's connection closed while this transaction was open (not by the sink's own "drop"):
   * the client was killed inside a transaction. With `bodyAt` set the body had arrived and the
   * client never read the reply; without it, it vanished before the body was complete.
   */
  cutAt?: number;
}

export interface SmtpSink {
  url: string;
  received: Received[];
  behaviour: SinkBehaviour;
  /** Every recipient address of every transaction, in arrival order. */
  recipients(): string[];
  /** Every client connection, by SMTP session id. */
  connections: Map<string, SinkConnection>;
  /** Every transaction begun, in order of their MAIL FROM. */
  transactions: SinkTransaction[];
  /** The transactions whose client went away while they were open (`cutAt` set). */
  cut(): SinkTransaction[];
  close(): Promise<void>;
}

export async function startSmtpSink(opts: SinkOptions = {}): Promise<SmtpSink> {
  const port = await freePort();
  const received: Received[] = [];
  // Per connection and per transaction: which client sent what, and which transactions were open
  // when their connection went away (a client killed inside a transaction).
  const connections = new Map<string, SinkConnection>();
  const transactions: SinkTransaction[] = [];
  const openTransaction = new Map<string, SinkTransaction>();
  const ended = (session: SMTPServerSession, outcome: Exclude<SinkTransaction["outcome"], "open">): SinkTransaction | undefined => {
    const t = openTransaction.get(session.id);
    if (!t) return undefined;
    openTransaction.delete(session.id);
    t.outcome = outcome;
    t.endedAt = Date.now();
    return t;
  };
  const tls = opts.tls;
  const sink: SmtpSink = {
    url: `${tls?.implicit ? "smtps" : "smtp"}://127.0.0.1:${port}`,
    received,
    behaviour: {},
    recipients: () => received.flatMap((r) => r.to),
    connections,
    transactions,
    cut: () => transactions.filter((t) => t.cutAt !== undefined),
    close: () => new Promise<void>((res) => server.close(() => res())),
  };
  const server = new SMTPServer({
    authOptional: true,
    ...(tls ? { key: tls.key, cert: tls.cert, secure: !!tls.implicit, hideSTARTTLS: !!tls.hideStartTls, disabledCommands: ["AUTH"] } : { disabledCommands: ["STARTTLS", "AUTH"] }),
    logger: false,
    size: 10 * 1024 * 1024,
    onConnect(session: SMTPServerSession, cb: (err?: Error | null) => void) {
      connections.set(session.id, { id: session.id, ehlo: "", remotePort: session.remotePort, openedAt: Date.now() });
      cb();
    },
    onMailFrom(_address: SMTPServerAddress, session: SMTPServerSession, cb: (err?: Error | null) => void) {
      ended(session, "reset"); // a transaction still open here was abandoned (RSET after every recipient was refused)
      const ehlo = session.hostNameAppearsAs || "";
      const c = connections.get(session.id);
      if (c) c.ehlo = ehlo;
      const t: SinkTransaction = { connection: session.id, ehlo, startedAt: Date.now(), to: [], outcome: "open" };
      transactions.push(t);
      openTransaction.set(session.id, t);
      cb();
    },
    onClose(session: SMTPServerSession) {
      const now = Date.now();
      const c = connections.get(session.id);
      if (c) c.closedAt = now;
      const t = openTransaction.get(session.id);
      if (!t) return;
      if (!session.envelope.mailFrom) return void ended(session, "reset"); // RSET, then the connection closed
      t.cutAt = now;
      if (t.to.length === 0) t.to = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
    },
    onRcptTo(address: SMTPServerAddress, _session: SMTPServerSession, cb: (err?: Error | null) => void) {
      const refusal = sink.behaviour.rcpt?.(address.address.toLowerCase());
      if (refusal) return cb(Object.assign(new Error(refusal.message), { responseCode: refusal.code }));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      const tx = openTransaction.get(session.id);
      if (tx) {
        tx.dataAt = Date.now();
        tx.to = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
      }
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", async () => {
        const to = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
        if (tx) {
          tx.bodyAt = Date.now();
          const raw = Buffer.concat(chunks);
          tx.messageId = headerOf(raw, "Message-ID");
          tx.inReplyTo = headerOf(raw, "In-Reply-To");
        }
        const client: SinkClient = { connection: session.id, ehlo: session.hostNameAppearsAs || "" };
        const verdict = (await sink.behaviour.data?.(to, Buffer.concat(chunks), client)) ?? null;
        if (verdict === "drop") {
          ended(session, "dropped"); // before the socket goes: the sink's own drop is not a client cut
          // The ambiguous case: the body arrived, the reply never does. Record it: it was delivered.
          void simpleParser(Buffer.concat(chunks)).then((mail) => {
            received.push({ at: Date.now(), from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "", to, mail, secure: session.secure, connection: session.id, startedAt: tx?.startedAt });
          });
          // smtp-server gives hooks the session, not the socket: find the connection it belongs to.
          const conns = (server as unknown as { connections: Set<{ session: { id: string }; _socket: { destroy(): void } }> }).connections;
          for (const c of conns) if (c.session.id === session.id) c._socket.destroy();
          return;
        }
        if (verdict) {
          ended(session, "refused");
          return cb(Object.assign(new Error(verdict.message), { responseCode: verdict.code }));
        }
        simpleParser(Buffer.concat(chunks))
          .then((mail) => {
            ended(session, "delivered");
            received.push({ at: Date.now(), from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "", to, mail, secure: session.secure, connection: session.id, startedAt: tx?.startedAt });
            cb();
          })
          .catch((e: Error) => cb(e));
      });
    },
  });
  // A client killed mid-transaction (fault tests) resets its connection: a fact of life for a server, not an error of the test.
  // So does a client that refuses the certificate (a TLS alert, or it just hangs up): what the TLS tests are about.
  server.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code === "ECONNRESET" || e.code === "EPIPE") return;
    if (tls && (e.code?.startsWith("ERR_SSL_") || e.code === "SocketError" || e.code === "TLSError")) return;
    throw e;
  });
  await new Promise<void>((res) => server.listen(port, "127.0.0.1", () => res()));
  return sink;
}

/** One header of a raw message (unfolded, trimmed), or undefined. */
export function headerOf(raw: Buffer, name: string): string | undefined {
  const end = raw.indexOf("\r\n\r\n");
  const head = raw.subarray(0, end < 0 ? raw.length : end).toString("latin1").replace(/\r\n[ \t]+/g, " ");
  const wanted = name.toLowerCase() + ":";
  for (const line of head.split("\r\n")) if (line.toLowerCase().startsWith(wanted)) return line.slice(wanted.length).trim();
  return undefined;
}

export interface TestCertificates {
  /** The CA's certificate (PEM) and the file holding it, as SMTP_CA_FILE would name it. */
  ca: string;
  caFile: string;
  /** Signed by the CA, for 127.0.0.1 and localhost. */
  server: { key: string; cert: string };
  /** Signed by the CA, for another host only. */
  otherHost: { key: string; cert: string };
  /** Self-signed, for the same names, and chaining to nothing anyone trusts. */
  selfSigned: { key: string; cert: string };
  /** Deletes the files. */
  cleanup(): void;
}

/** A throwaway CA and certificates made with openssl in a temporary folder (valid two days). */
export function testCertificates(): TestCertificates {
  const dir = mkdtempSync(join(tmpdir(), "airlock-tls-"));
  const f = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"];
  const names = "subjectAltName=IP:127.0.0.1,DNS:localhost";
  openssl("req", "-x509", ...key, "-keyout", f("ca.key"), "-out", f("ca.pem"), "-subj", "/CN=Airlock test CA", "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign");
  const signed = (name: string, altNames: string) => {
    openssl("req", ...key.slice(0, -2), "-keyout", f(`${name}.key`), "-out", f(`${name}.csr`), "-subj", "/CN=localhost");
    writeFileSync(f(`${name}.ext`), `${altNames}\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n`);
    openssl("x509", "-req", "-in", f(`${name}.csr`), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", f(`${name}.ext`), "-out", f(`${name}.pem`));
  };
  signed("server", names);
  signed("other", "subjectAltName=DNS:mail.elsewhere.example");
  openssl("req", "-x509", ...key, "-keyout", f("self.key"), "-out", f("self.pem"), "-subj", "/CN=localhost", "-addext", names);
  const read = (name: string) => readFileSync(f(name), "utf8");
  return {
    ca: read("ca.pem"),
    caFile: f("ca.pem"),
    server: { key: read("server.key"), cert: read("server.pem") },
    otherHost: { key: read("other.key"), cert: read("other.pem") },
    selfSigned: { key: read("self.key"), cert: read("self.pem") },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}
