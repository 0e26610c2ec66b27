/**
 * The inbound SMTP listener with real SMTP clients: nodemailer's SMTP transport for mail that
 * should be accepted, a raw socket where the refusal itself is under test.
 */
import nodemailer from "nodemailer";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startInboundListener, type BounceEvent, type DiscardEvent, type InboundHandler, type InboundListener, type InboundListenerOptions, type ReplyEvent } from "../../src/inbound/listener.js";
import { Verp } from "../../src/inbound/verp.js";
import { DSN_FIXTURES, dsnFixture } from "../support/dsn-fixtures.js";
import { RawSmtp } from "../support/raw-smtp.js";
import { testCertificates } from "../support/smtp-sink.js";

const verp = new Verp({ domain: "bounces.corp.example", secret: "inbound-test-secret-0123456789abcdef0123" });

interface Recorded {
  bounces: BounceEvent[];
  replies: ReplyEvent[];
  discards: DiscardEvent[];
}

function recorder(overrides: Partial<InboundHandler> = {}): { handler: InboundHandler; seen: Recorded } {
  const seen: Recorded = { bounces: [], replies: [], discards: [] };
  return {
    seen,
    handler: {
      onBounce: (e) => void seen.bounces.push(e),
      onReply: (e) => void seen.replies.push(e),
      onDiscard: (e) => void seen.discards.push(e),
      ...overrides,
    },
  };
}

const open: InboundListener[] = [];
async function listen(o: Partial<InboundListenerOptions> & { handler: InboundHandler }): Promise<InboundListener> {
  const l = await startInboundListener({ verp, port: 0, host: "127.0.0.1", ...o });
  open.push(l);
  return l;
}
afterEach(async () => {
  await Promise.all(open.splice(0).map((l) => l.close()));
});

function transport(port: number, extra: Record<string, unknown> = {}) {
  // ignoreTLS: the listener offers no STARTTLS unless configured; the TLS test says otherwise.
  return nodemailer.createTransport({ host: "127.0.0.1", port, secure: false, ignoreTLS: true, ...extra });
}

function replyMail(headers: string[], body: string): Buffer {
  return Buffer.from(
    [
      "From: Alice Example <alice@corp.example>",
      `To: ${verp.replyAddress("42", "w1")}`,
      "Subject: Re: Changes to the holiday calendar",
      "Message-ID: <reply-1@corp.example>",
      "MIME-Version: 1.0",
      "Content-Type: text/plain; charset=utf-8",
      ...headers,
      "",
      body,
    ].join("\r\n"),
  );
}

describe("inbound listener: bounces and replies", () => {
  let listener: InboundListener;
  let seen: Recorded;
  beforeAll(async () => {
    const r = recorder();
    seen = r.seen;
    listener = await startInboundListener({ verp, port: 0, host: "127.0.0.1", handler: r.handler });
  });
  afterAll(() => listener.close());

  it("marks the recipient of each DSN fixture bounced, by the index in its VERP address", async () => {
    const t = transport(listener.port);
    const expected = {
      "office365.eml": { index: 0, status: "5.1.10", outcome: "failed", permanent: true, finalRecipient: "jdoe@contoso.com" },
      "postfix-failed.eml": { index: 1, status: "5.1.1", outcome: "failed", permanent: true, finalRecipient: "m.rossi@example.org" },
      "postfix-delayed.eml": { index: 2, status: "4.4.1", outcome: "delayed", permanent: false, finalRecipient: "k.tanaka@example.net" },
      "gmail.eml": { index: 99_999, status: "5.1.1", outcome: "failed", permanent: true, finalRecipient: "no.such.user.4711@gmail.com" },
    } as const;
    for (const name of DSN_FIXTURES) {
      const to = verp.bounceAddress("42", expected[name].index);
      // MAIL FROM:<> as every DSN is sent (RFC 3464 §2, RFC 5321 §4.5.5).
      const info = await t.sendMail({ envelope: { from: "", to }, raw: dsnFixture(name, to) });
      expect(info.accepted).toEqual([to]);
      // The handler ran before the 250: the event is there as soon as sendMail resolves.
      expect(seen.bounces.at(-1), name).toMatchObject({ messageId: "42", ...expected[name] });
      expect(seen.bounces.at(-1)?.diagnostic, name).toBeTruthy();
    }
    expect(seen.bounces.map((b) => b.index)).toEqual([0, 1, 2, 99_999]);
    t.close();
  });

  it("drops an out-of-office reply sent to the return path instead of counting it a bounce", async () => {
    const before = seen.bounces.length;
    const to = verp.bounceAddress("42", 5);
    const t = transport(listener.port);
    await t.sendMail({ envelope: { from: "", to }, raw: replyMail(["Auto-Submitted: auto-replied", "Subject: Automatic reply: x"], "Away until Monday.") });
    t.close();
    expect(seen.bounces.length).toBe(before);
    expect(seen.discards.at(-1)).toEqual({ kind: "bounce", messageId: "42", reason: "an automatic reply to the return path" });
  });

  it("classifies a human reply as human, with its excerpt, and an auto-reply as automatic", async () => {
    const t = transport(listener.port);
    const to = verp.replyAddress("42", "w1");
    await t.sendMail({
      envelope: { from: "alice@corp.example", to },
      raw: replyMail([], "This went to everyone, the date is wrong.\r\n\r\nOn Tue, 1 Dec 2026 at 10:02, Internal Communications <comms@corp.example> wrote:\r\n> The holiday calendar"),
    });
    expect(seen.replies.at(-1)).toEqual({
      messageId: "42",
      token: "w1",
      automatic: false,
      reasons: [],
      from: "alice@corp.example",
      excerpt: "This went to everyone, the date is wrong.",
      mailMessageId: "<reply-1@corp.example>",
    });
    await t.sendMail({ envelope: { from: "bob@corp.example", to }, raw: replyMail(["Auto-Submitted: auto-replied", "X-Auto-Response-Suppress: All"], "I am out of the office.") });
    expect(seen.replies.at(-1)).toMatchObject({ automatic: true, reasons: ["Auto-Submitted: auto-replied", "x-auto-response-suppress: All"] });
    t.close();
  });

  it("refuses relaying at RCPT time with 550, and a fabricated or tampered address at its domain", async () => {
    const { smtp, greeting, ehlo } = await RawSmtp.session(listener.port);
    expect(greeting?.code).toBe(220);
    expect(ehlo?.text).not.toMatch(/AUTH|STARTTLS/);
    expect((await smtp.command("MAIL FROM:<spammer@elsewhere.example>"))?.code).toBe(250);
    const relay = await smtp.command("RCPT TO:<victim@gmail.com>");
    expect(relay).toEqual({ code: 550, text: "5.7.1 Relaying denied: this server accepts mail for its own domain only" });
    expect((await smtp.command("RCPT TO:<someone@corp.example>"))?.code).toBe(550);
    expect((await smtp.command("RCPT TO:<postmaster@bounces.corp.example>"))?.code).toBe(550);
    const real = verp.bounceAddress("42", 7);
    const forged = real.replace("bounce+42.7.", "bounce+42.8.");
    expect((await smtp.command(`RCPT TO:<${forged}>`))?.text).toBe("5.1.1 No such recipient here");
    // With no recipient accepted, there is nothing to send.
    expect((await smtp.command("DATA"))?.code).toBe(503);
    expect((await smtp.command("AUTH PLAIN AGFAYg=="))?.code).toBeGreaterThanOrEqual(500);
    await smtp.quit();
  });

  it("refuses an oversized mail with 552: declared with SIZE at MAIL FROM, or after DATA", async () => {
    const { smtp } = await RawSmtp.session(listener.port);
    expect((await smtp.command(`MAIL FROM:<> SIZE=${300 * 1024}`))?.code).toBe(552);
    expect((await smtp.command("MAIL FROM:<>"))?.code).toBe(250);
    const to = verp.bounceAddress("42", 8);
    expect((await smtp.command(`RCPT TO:<${to}>`))?.code).toBe(250);
    expect((await smtp.command("DATA"))?.code).toBe(354);
    const before = seen.bounces.length;
    const big = dsnFixture("postfix-failed.eml", to).toString("latin1") + `${"x".repeat(998)}\r\n`.repeat(300);
    smtp.write(`${big}.\r\n`);
    expect(await smtp.reply()).toMatchObject({ code: 552 });
    expect(seen.bounces.length).toBe(before);
    // The session goes on: a small mail right after is accepted.
    expect((await smtp.command("MAIL FROM:<>"))?.code).toBe(250);
    await smtp.quit();
  });

  it("stays up after garbage on the wire, and accepts the next mail", async () => {
    const { smtp } = await RawSmtp.session(listener.port);
    smtp.write(Buffer.from([0, 1, 2, 255, 13, 10]));
    expect((await smtp.reply())?.code).toBeGreaterThanOrEqual(500);
    smtp.write(`${"A".repeat(20_000)}\r\n`); // over smtp-server's command length limit
    await smtp.reply();
    smtp.destroy();
    await smtp.closed;
    const t = transport(listener.port);
    const to = verp.bounceAddress("42", 9);
    await expect(t.sendMail({ envelope: { from: "", to }, raw: dsnFixture("gmail.eml", to) })).resolves.toMatchObject({ accepted: [to] });
    t.close();
  });
});

describe("inbound listener: failures stay inside", () => {
  it("answers 451 when the handler throws or hangs, and keeps serving", async () => {
    let mode: "throw" | "hang" | "ok" = "throw";
    const { handler, seen } = recorder({
      onBounce: (e) => {
        if (mode === "throw") throw new Error("store down");
        if (mode === "hang") return new Promise<void>(() => {});
        seen.bounces.push(e);
      },
    });
    // 300 ms: the listener's own deadline for a handler, shortened so the test does not wait 15 s.
    const l = await listen({ handler, handlerTimeoutMs: 300 });
    const to = verp.bounceAddress("7", 3);
    const t = transport(l.port);
    await expect(t.sendMail({ envelope: { from: "", to }, raw: dsnFixture("office365.eml", to) })).rejects.toMatchObject({ responseCode: 451 });
    mode = "hang";
    await expect(t.sendMail({ envelope: { from: "", to }, raw: dsnFixture("office365.eml", to) })).rejects.toMatchObject({ responseCode: 451 });
    mode = "ok";
    await t.sendMail({ envelope: { from: "", to }, raw: dsnFixture("office365.eml", to) });
    expect(seen.bounces).toMatchObject([{ messageId: "7", index: 3 }]);
    t.close();
  });
});

describe("inbound listener: a flooding client", () => {
  it("is refused at MAIL FROM with 450 past its burst and at connect with 421, until its rate refills", async () => {
    let now = 1_000_000;
    const { handler } = recorder();
    const l = await listen({ handler, rate: { burst: 3, perMinute: 6, maxConnections: 2, now: () => now } });
    const { smtp } = await RawSmtp.session(l.port);
    for (let i = 0; i < 3; i++) {
      expect((await smtp.command("MAIL FROM:<>"))?.code).toBe(250);
      expect((await smtp.command("RSET"))?.code).toBe(250);
    }
    expect(await smtp.command("MAIL FROM:<>")).toEqual({ code: 450, text: "4.7.1 Too many messages from your address, try again later" });
    // A new connection of the same client is refused at once, and closed.
    const refused = await RawSmtp.open(l.port);
    expect(await refused.reply()).toMatchObject({ code: 421 });
    await refused.closed;
    // Ten seconds later one transaction has come back (6 per minute).
    now += 10_000;
    expect((await smtp.command("MAIL FROM:<>"))?.code).toBe(250);
    expect((await smtp.command("RSET"))?.code).toBe(250);
    expect((await smtp.command("MAIL FROM:<>"))?.code).toBe(450);
    await smtp.quit();
  });

  it("caps the connections one client holds open", async () => {
    const { handler } = recorder();
    const l = await listen({ handler, rate: { maxConnections: 2 } });
    const a = await RawSmtp.session(l.port);
    const b = await RawSmtp.session(l.port);
    expect([a.greeting?.code, b.greeting?.code]).toEqual([220, 220]);
    const c = await RawSmtp.open(l.port);
    expect(await c.reply()).toMatchObject({ code: 421 });
    await c.closed;
    await a.smtp.quit();
    await b.smtp.quit();
  });
});

describe("inbound listener: STARTTLS", () => {
  it("offers STARTTLS with a configured certificate and receives over TLS", async () => {
    const certs = testCertificates();
    try {
      const { handler, seen } = recorder();
      const l = await listen({ handler, tls: certs.server });
      const { smtp, ehlo } = await RawSmtp.session(l.port);
      expect(ehlo?.text).toMatch(/STARTTLS/);
      await smtp.quit();
      const t = nodemailer.createTransport({ host: "127.0.0.1", port: l.port, secure: false, requireTLS: true, tls: { ca: certs.ca, servername: "localhost" } });
      const to = verp.replyAddress("42", "w1");
      await t.sendMail({ envelope: { from: "alice@corp.example", to }, raw: replyMail([], "Over TLS.") });
      t.close();
      expect(seen.replies).toMatchObject([{ automatic: false, excerpt: "Over TLS." }]);
    } finally {
      certs.cleanup();
    }
  });
});
