/**
 * The pooled SMTP transport against a real in-process SMTP server whose hooks inject per-RCPT
 * rejections, DATA failures and dropped connections, at the stage each classification is about.
 * Every case runs twice: with a plain URL (the pipelined client, smtp-client.ts) and with a URL
 * carrying credentials (nodemailer's pool, which authenticates): both must classify alike.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { simpleParser } from "mailparser";
import { SMTPServer, type SMTPServerSession } from "smtp-server";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/infra/redis-process.js";
import { buildMime } from "../../src/mail/mime.js";
import { classifySmtpError } from "../../src/mail/smtp-errors.js";
import { createOutboxTransport, createSmtpTransport, SmtpSendError, type MailTransport } from "../../src/mail/transport.js";

interface Transaction {
  from: string;
  to: string[];
  raw: Buffer;
}

/** What the server does; reset after every test. "drop" destroys the socket without a reply. */
interface Behaviour {
  mailFrom?: () => number | null;
  rcpt?: (address: string) => number | "drop" | null;
  data?: () => number | "drop" | null;
}

let server: SMTPServer;
let port: number;
let transport: MailTransport;
let behaviour: Behaviour = {};
const received: Transaction[] = [];
/** The user each delivered transaction's session authenticated as (null: none). */
const authenticatedAs: Array<string | null> = [];
/** What each delivered transaction's client said after EHLO. */
const greetedAs: string[] = [];

const smtpError = (code: number) => Object.assign(new Error(`injected ${code}`), { responseCode: code });

/** smtp-server gives hooks the session, not the socket: find the connection it belongs to. */
function dropConnection(session: SMTPServerSession) {
  for (const c of server.connections) if (c.session.id === session.id) c._socket.destroy();
}

beforeAll(async () => {
  port = await freePort();
  server = new SMTPServer({
    // AUTH is offered (without TLS on loopback) but optional: the plain-URL client does not log in.
    authOptional: true,
    allowInsecureAuth: true,
    disabledCommands: ["STARTTLS"],
    logger: false,
    onAuth(auth, _session, cb) {
      if (auth.username === "airlock" && auth.password === "s3cret/pw") return cb(null, { user: auth.username });
      cb(Object.assign(new Error("5.7.8 authentication failed"), { responseCode: 535 }));
    },
    onMailFrom(_address, _session, cb) {
      const code = behaviour.mailFrom?.() ?? null;
      cb(code === null ? null : smtpError(code));
    },
    onRcptTo(address, session, cb) {
      const verdict = behaviour.rcpt?.(address.address) ?? null;
      if (verdict === "drop") return dropConnection(session);
      cb(verdict === null ? null : smtpError(verdict));
    },
    onData(stream, session, cb) {
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        const verdict = behaviour.data?.() ?? null;
        if (typeof verdict === "number") return cb(smtpError(verdict));
        // Whole body received: from here on the server has the message, whatever the client hears.
        const mailFrom = session.envelope.mailFrom;
        received.push({ from: mailFrom ? mailFrom.address : "", to: session.envelope.rcptTo.map((r) => r.address), raw: Buffer.concat(chunks) });
        authenticatedAs.push(typeof session.user === "string" ? session.user : null);
        greetedAs.push(session.hostNameAppearsAs);
        if (verdict === "drop") return dropConnection(session);
        cb();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", () => resolve()));
});

afterEach(() => {
  behaviour = {};
  received.length = 0;
  authenticatedAs.length = 0;
  greetedAs.length = 0;
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

const envelope = { from: "bounces@corp.example", to: ["ann@corp.example", "bob@corp.example", "cat@corp.example"] };
const message = () =>
  buildMime({
    from: "Internal Communications <comms@corp.example>",
    toHeader: `"All employees" <all-employees@corp.example>`,
    subject: "Quarterly update — please read",
    text: "Hello all.\n\n.A line starting with a dot survives dot-stuffing.\n",
    html: "<p>Hello all.</p>",
    messageId: "<airlock.7.abcdef@corp.example>",
    date: new Date("2024-03-01T09:00:00Z"),
  });

async function sendError(raw: Buffer, env = envelope): Promise<SmtpSendError> {
  const err = await transport.send(env, raw).then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(SmtpSendError);
  return err as SmtpSendError;
}

const VARIANTS = [
  { name: "pipelined client, plain URL", url: () => `smtp://127.0.0.1:${port}`, user: null },
  // The password needs URL encoding, as an operator would write it in SMTP_URL.
  { name: "nodemailer pool, URL with credentials", url: () => `smtp://airlock:${encodeURIComponent("s3cret/pw")}@127.0.0.1:${port}`, user: "airlock" },
] as const;

describe.each(VARIANTS)("SMTP transport ($name)", (variant) => {
  beforeAll(() => {
    transport = createSmtpTransport({ url: variant.url(), poolSize: 2 });
  });
  afterAll(async () => transport.close());

  it("delivers one transaction with every RCPT, the bytes exactly as built", async () => {
    const raw = await message();
    const result = await transport.send(envelope, raw);
    expect(result).toEqual({ accepted: envelope.to, rejected: [] });
    expect(received).toHaveLength(1);
    const [tx] = received;
    expect(tx?.from).toBe(envelope.from);
    expect(tx?.to).toEqual(envelope.to);
    // The credentials in the URL were used (and only when there were some).
    expect(authenticatedAs).toEqual([variant.user]);
    // RFC 5321: a fully qualified name or an address literal, never a bare word a relay may refuse.
    expect(greetedAs[0]).toMatch(/^(\[[0-9a-fA-F:.]+\]|\[IPv6:[0-9a-fA-F:.]+\]|[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+)$/);
    expect(tx?.raw.toString("latin1").replace(/\r\n$/, "")).toBe(raw.toString("latin1").replace(/\r\n$/, ""));
    const [got, built] = await Promise.all([simpleParser(tx!.raw), simpleParser(raw)]);
    expect(got.subject).toBe("Quarterly update — please read");
    expect(got.messageId).toBe("<airlock.7.abcdef@corp.example>");
    expect(got.text).toBe(built.text);
    expect(got.html).toBe(built.html);
    expect(got.headers.get("auto-submitted")).toBe("auto-generated");
  });

  it("reports a 550 for one RCPT as that recipient's rejection and delivers to the others", async () => {
    behaviour.rcpt = (a) => (a === "bob@corp.example" ? 550 : null);
    const result = await transport.send(envelope, await message());
    expect(result.accepted).toEqual(["ann@corp.example", "cat@corp.example"]);
    expect(result.rejected).toEqual([{ address: "bob@corp.example", code: 550, response: expect.stringMatching(/^550 /), kind: "permanent" }]);
    expect(received[0]?.to).toEqual(["ann@corp.example", "cat@corp.example"]);
  });

  it("reports every recipient refused as rejections, not as a failed transaction", async () => {
    behaviour.rcpt = (a) => (a === "ann@corp.example" ? 452 : 550);
    const result = await transport.send(envelope, await message());
    expect(result.accepted).toEqual([]);
    expect(result.rejected.map((r) => [r.address, r.code, r.kind])).toEqual([
      ["ann@corp.example", 452, "temporary"],
      ["bob@corp.example", 550, "permanent"],
      ["cat@corp.example", 550, "permanent"],
    ]);
    expect(received).toHaveLength(0);
  });

  it("classifies a 451 after DATA as temporary", async () => {
    behaviour.data = () => 451;
    const err = await sendError(await message());
    expect(err.kind).toBe("temporary");
    expect(err.responseCode).toBe(451);
  });

  it("classifies a 554 after DATA as permanent", async () => {
    behaviour.data = () => 554;
    const err = await sendError(await message());
    expect(err.kind).toBe("permanent");
    expect(err.responseCode).toBe(554);
    expect(err.command).toBe("DATA");
  });

  it("classifies a sender refused with 553 as permanent", async () => {
    behaviour.mailFrom = () => 553;
    const err = await sendError(await message());
    expect(err.kind).toBe("permanent");
    expect(err.command).toBe("MAIL FROM");
  });

  it("classifies a connection lost after the body, before the reply, as ambiguous", async () => {
    behaviour.data = () => "drop";
    const err = await sendError(await message());
    expect(err.kind).toBe("ambiguous");
    expect(received).toHaveLength(1); // the server did get it: a retry would be a duplicate
  });

  it("classifies a connection lost before DATA as temporary", async () => {
    behaviour.rcpt = (a) => (a === "bob@corp.example" ? "drop" : null);
    const err = await sendError(await message());
    expect(err.kind).toBe("temporary");
    expect(received).toHaveLength(0);
  });

  it("keeps delivering after failures, on fresh connections, and does not re-send on its own", async () => {
    behaviour.data = () => "drop";
    await sendError(await message());
    behaviour = {};
    const results = await Promise.all([1, 2, 3].map(async (n) => transport.send({ from: envelope.from, to: [`u${n}@corp.example`] }, await message())));
    expect(results.map((r) => r.accepted)).toEqual([["u1@corp.example"], ["u2@corp.example"], ["u3@corp.example"]]);
    // One dropped transaction (no pool requeue of it) plus three new ones.
    expect(received.map((t) => t.to.join())).toEqual(expect.arrayContaining([envelope.to.join(), "u1@corp.example", "u2@corp.example", "u3@corp.example"]));
    expect(received).toHaveLength(4);
  });

  it("greets with SMTP_EHLO_NAME when it is set", async () => {
    const named = createSmtpTransport({ url: variant.url(), poolSize: 1, ehloName: "airlock-1.corp.example" });
    try {
      await named.send(envelope, await message());
      expect(greetedAs).toEqual(["airlock-1.corp.example"]);
    } finally {
      await named.close();
    }
  });

  it("classifies a refused connection as temporary", async () => {
    const nobody = createSmtpTransport({ url: `smtp://127.0.0.1:${await freePort()}`, poolSize: 1 });
    try {
      const err = await nobody.send(envelope, await message()).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(SmtpSendError);
      expect((err as SmtpSendError).kind).toBe("temporary");
    } finally {
      await nobody.close();
    }
  });
});

describe("classifySmtpError", () => {
  it("treats a refusal of the session (not of the message) as temporary", () => {
    // A bad password would otherwise fail every recipient for good.
    expect(classifySmtpError({ code: "EAUTH", responseCode: 535, command: "AUTH PLAIN" }, false)).toBe("temporary");
    expect(classifySmtpError({ code: "EPROTOCOL", responseCode: 554, command: "CONN" }, false)).toBe("temporary");
  });
  it("follows nodemailer on 503 and trusts a reply over a lost body", () => {
    expect(classifySmtpError({ code: "EMESSAGE", responseCode: 503, command: "DATA" }, true)).toBe("temporary");
    expect(classifySmtpError({ code: "ECONNECTION", responseCode: 421, command: "CONN" }, true)).toBe("temporary");
    expect(classifySmtpError({ code: "ETIMEDOUT", command: "CONN" }, true)).toBe("ambiguous");
    expect(classifySmtpError({ code: "EENVELOPE", command: "API" }, false)).toBe("permanent");
  });
});

describe("outbox transport", () => {
  it("writes each transaction as an unchanged .eml with its envelope beside it", async () => {
    const dir = join(mkdtempSync(join(tmpdir(), "airlock-outbox-")), "outbox");
    try {
      const outbox = createOutboxTransport(dir, () => new Date("2024-03-01T09:00:00Z"));
      const raw = await message();
      expect(await outbox.send(envelope, raw)).toEqual({ accepted: envelope.to, rejected: [] });
      await outbox.send({ from: envelope.from, to: ["dan@corp.example"] }, raw);
      const files = readdirSync(dir).sort();
      expect(files).toEqual([
        "2024-03-01T09-00-00-000Z-000001.eml",
        "2024-03-01T09-00-00-000Z-000001.json",
        "2024-03-01T09-00-00-000Z-000002.eml",
        "2024-03-01T09-00-00-000Z-000002.json",
      ]);
      expect(readFileSync(join(dir, files[0]!)).equals(raw)).toBe(true);
      expect(JSON.parse(readFileSync(join(dir, files[1]!), "utf8"))).toEqual({ ...envelope, at: "2024-03-01T09:00:00.000Z" });
    } finally {
      rmSync(dirname(dir), { recursive: true, force: true });
    }
  });
});
