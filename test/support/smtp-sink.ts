/**
 * A real in-process SMTP server that records every transaction, parsed with mailparser.
 * `behaviour` hooks let a test inject rejections, temporary failures and dropped connections.
 */
import { simpleParser, type ParsedMail } from "mailparser";
import { SMTPServer, type SMTPServerAddress, type SMTPServerSession } from "smtp-server";
import { freePort } from "../../src/infra/redis-process.js";

export interface Received {
  at: number;
  from: string;
  to: string[];
  mail: ParsedMail;
}

export interface SinkBehaviour {
  /** Reject one RCPT: return e.g. `{code: 550, message: "no such user"}`. */
  rcpt?(address: string): { code: number; message: string } | null;
  /**
   * Fail the DATA of a transaction, or return "drop" to cut the connection after the body. May
   * answer later (a promise): the transaction stays open until then, which lets a test hold
   * transactions in flight deterministically.
   */
  data?(to: string[], raw: Buffer): DataVerdict | Promise<DataVerdict>;
}

type DataVerdict = { code: number; message: string } | "drop" | null;

export interface SmtpSink {
  url: string;
  received: Received[];
  behaviour: SinkBehaviour;
  /** Every recipient address of every transaction, in arrival order. */
  recipients(): string[];
  close(): Promise<void>;
}

export async function startSmtpSink(): Promise<SmtpSink> {
  const port = await freePort();
  const received: Received[] = [];
  const sink: SmtpSink = {
    url: `smtp://127.0.0.1:${port}`,
    received,
    behaviour: {},
    recipients: () => received.flatMap((r) => r.to),
    close: () => new Promise<void>((res) => server.close(() => res())),
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    size: 10 * 1024 * 1024,
    onRcptTo(address: SMTPServerAddress, _session: SMTPServerSession, cb: (err?: Error | null) => void) {
      const refusal = sink.behaviour.rcpt?.(address.address.toLowerCase());
      if (refusal) return cb(Object.assign(new Error(refusal.message), { responseCode: refusal.code }));
      cb();
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", async () => {
        const to = session.envelope.rcptTo.map((r) => r.address.toLowerCase());
        const verdict = (await sink.behaviour.data?.(to, Buffer.concat(chunks))) ?? null;
        if (verdict === "drop") {
          // The ambiguous case: the body arrived, the reply never does. Record it: it was delivered.
          void simpleParser(Buffer.concat(chunks)).then((mail) => {
            received.push({ at: Date.now(), from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "", to, mail });
          });
          // smtp-server gives hooks the session, not the socket: find the connection it belongs to.
          const conns = (server as unknown as { connections: Set<{ session: { id: string }; _socket: { destroy(): void } }> }).connections;
          for (const c of conns) if (c.session.id === session.id) c._socket.destroy();
          return;
        }
        if (verdict) return cb(Object.assign(new Error(verdict.message), { responseCode: verdict.code }));
        simpleParser(Buffer.concat(chunks))
          .then((mail) => {
            received.push({ at: Date.now(), from: session.envelope.mailFrom ? session.envelope.mailFrom.address : "", to, mail });
            cb();
          })
          .catch((e: Error) => cb(e));
      });
    },
  });
  // A client killed mid-transaction (fault tests) resets its connection: a fact of life for a server, not an error of the test.
  server.on("error", (e: NodeJS.ErrnoException) => {
    if (e.code !== "ECONNRESET" && e.code !== "EPIPE") throw e;
  });
  await new Promise<void>((res) => server.listen(port, "127.0.0.1", () => res()));
  return sink;
}
