/**
 * The pipelined SMTP client (src/mail/smtp-client.ts) where it differs from what the transport
 * tests cover: a server without PIPELINING, the pool limit, and the DATA body it computes.
 * (smtp-transport.test.ts runs the transport's contract against it: its URL is plain smtp://.)
 */
import { SMTPServer } from "smtp-server";
import { afterEach, describe, expect, it } from "vitest";
import { freePort } from "../../src/infra/redis-process.js";
import { dataBody, SmtpClientPool } from "../../src/mail/smtp-client.js";

let server: SMTPServer | null = null;
afterEach(async () => {
  const s = server;
  server = null;
  if (s) await new Promise<void>((res) => s.close(() => res()));
});

async function startServer(opts: { pipelining: boolean }) {
  const port = await freePort();
  const received: Array<{ to: string[]; body: string }> = [];
  let open = 0;
  let maxOpen = 0;
  server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    hidePIPELINING: !opts.pipelining,
    onConnect(_s, cb) {
      maxOpen = Math.max(maxOpen, ++open);
      cb();
    },
    onClose() {
      open--;
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        received.push({ to: session.envelope.rcptTo.map((r) => r.address), body: Buffer.concat(chunks).toString("latin1") });
        cb();
      });
    },
  } as ConstructorParameters<typeof SMTPServer>[0]);
  await new Promise<void>((res) => server!.listen(port, "127.0.0.1", () => res()));
  return { port, received, maxOpen: () => maxOpen };
}

const raw = Buffer.from("Subject: hi\r\n\r\n.starts with a dot\r\nlast line");

describe("pipelined SMTP client", () => {
  it("sends the commands one by one to a server without PIPELINING", async () => {
    const s = await startServer({ pipelining: false });
    const pool = new SmtpClientPool({ host: "127.0.0.1", port: s.port, secure: false, poolSize: 1 });
    try {
      const r = await pool.send("from@corp.example", ["a@corp.example", "b@corp.example"], raw);
      expect(r).toEqual({ accepted: ["a@corp.example", "b@corp.example"], rejected: [] });
      expect(s.received).toEqual([{ to: ["a@corp.example", "b@corp.example"], body: "Subject: hi\r\n\r\n.starts with a dot\r\nlast line\r\n" }]);
    } finally {
      await pool.close();
    }
  });

  it("keeps to the pool size: concurrent transactions wait for a connection", async () => {
    const s = await startServer({ pipelining: true });
    const pool = new SmtpClientPool({ host: "127.0.0.1", port: s.port, secure: false, poolSize: 2 });
    try {
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => pool.send("from@corp.example", [`u${i}@corp.example`], raw)));
      expect(results.map((r) => r.accepted[0])).toEqual(Array.from({ length: 10 }, (_, i) => `u${i}@corp.example`));
      expect(s.received).toHaveLength(10);
      expect(s.maxOpen()).toBe(2);
    } finally {
      await pool.close();
    }
  });

  it("stuffs leading dots, makes every line end CRLF and terminates the data", () => {
    expect(dataBody(Buffer.from(".a\nb\r.c\r\n..d")).toString("latin1")).toBe("..a\r\nb\r\n..c\r\n...d\r\n.\r\n");
    expect(dataBody(Buffer.from("x\r\n")).toString("latin1")).toBe("x\r\n.\r\n");
  });
});
