/**
 * SMTP_TLS and SMTP_CA_FILE against the real smtp-server sink with a throwaway CA (openssl):
 * `required` delivers only over TLS with a verified certificate and otherwise refuses before
 * MAIL FROM (nothing reaches the server in plaintext); `opportunistic` upgrades when offered;
 * `none` never does; smtps is TLS from the first byte. Every case runs with both clients: a plain
 * URL (the pipelined client) and a URL with a query parameter (nodemailer's pool).
 */
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError } from "../../src/config.js";
import { createSmtpTransport, SmtpSendError, type SendResult, type SmtpTransportOptions } from "../../src/mail/transport.js";
import { startAirlock } from "../support/airlock.js";
import { startSmtpSink, testCertificates, type SinkTls, type SmtpSink, type TestCertificates } from "../support/smtp-sink.js";

let certs: TestCertificates;
beforeAll(() => {
  certs = testCertificates();
});
afterAll(() => certs?.cleanup());

const envelope = { from: "bounces@corp.example", to: ["ann@corp.example"] };
const raw = Buffer.from("From: comms@corp.example\r\nTo: ann@corp.example\r\nSubject: TLS\r\nMessage-ID: <tls.1@corp.example>\r\n\r\nHello.\r\n");

/** A sink for one test: no STARTTLS at all (null), or the given certificate and TLS options. */
async function withSink<T>(tls: (Omit<SinkTls, "key" | "cert"> & { cert: "ca-signed" | "self-signed" | "other-host" }) | null, run: (sink: SmtpSink) => Promise<T>): Promise<T> {
  const pair = { "ca-signed": certs.server, "self-signed": certs.selfSigned, "other-host": certs.otherHost };
  const sink = await startSmtpSink(tls ? { tls: { ...tls, ...pair[tls.cert] } } : {});
  try {
    return await run(sink);
  } finally {
    await sink.close();
  }
}

/** One send through a fresh transport: its result, or the SmtpSendError it failed with. */
async function sendOnce(opts: Omit<SmtpTransportOptions, "poolSize">): Promise<SendResult | SmtpSendError> {
  const transport = createSmtpTransport({ ...opts, poolSize: 1 });
  try {
    return await transport.send(envelope, raw).catch((e: unknown) => {
      if (e instanceof SmtpSendError) return e;
      throw e;
    });
  } finally {
    await transport.close();
  }
}

function expectRefused(outcome: SendResult | SmtpSendError, message: RegExp): void {
  expect(outcome).toBeInstanceOf(SmtpSendError);
  const err = outcome as SmtpSendError;
  expect(err.message).toMatch(message);
  // Our configuration or the server's, not the message: retried with backoff, so fixing either recovers the fan-out.
  expect(err.kind).toBe("temporary");
}

const VARIANTS = [
  { name: "pipelined client, plain URL", url: (sink: SmtpSink) => sink.url, hiddenStartTls: "refused" },
  // Any query parameter makes it nodemailer's; this one changes nothing about TLS.
  { name: "nodemailer pool, URL with a query parameter", url: (sink: SmtpSink) => `${sink.url}?connectionTimeout=30000`, hiddenStartTls: "tls" },
] as const;

describe.each(VARIANTS)("SMTP_TLS ($name)", (variant) => {
  it("required: delivers over STARTTLS when the certificate chains to SMTP_CA_FILE", async () => {
    await withSink({ cert: "ca-signed" }, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "required", caFile: certs.caFile });
      expect(outcome).toEqual({ accepted: envelope.to, rejected: [] });
      expect(sink.received.map((r) => [r.to, r.secure])).toEqual([[envelope.to, true]]);
    });
  });

  it("required: refuses a server without STARTTLS, and sends it nothing", async () => {
    await withSink(null, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "required", caFile: certs.caFile });
      expectRefused(outcome, /STARTTLS.*SMTP_TLS=required/);
      expect(sink.received).toEqual([]);
    });
  });

  it("required: refuses a certificate that does not chain to a trusted CA, with no fallback to plaintext", async () => {
    await withSink({ cert: "self-signed" }, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "required", caFile: certs.caFile });
      expectRefused(outcome, /TLS with the SMTP server failed \(STARTTLS, SMTP_TLS=required\): .*self-signed certificate/);
      expect(sink.received).toEqual([]);
    });
  });

  it("required: refuses a certificate from the trusted CA that names another host", async () => {
    await withSink({ cert: "other-host" }, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "required", caFile: certs.caFile });
      expectRefused(outcome, /SMTP_TLS=required\): .*IP: 127\.0\.0\.1 is not in the cert's list/);
      expect(sink.received).toEqual([]);
    });
  });

  it("required: a server that accepts STARTTLS without announcing it", async () => {
    await withSink({ cert: "ca-signed", hideStartTls: true }, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "required", caFile: certs.caFile });
      if (variant.hiddenStartTls === "refused") {
        // The pipelined client goes by what EHLO announced.
        expectRefused(outcome, /^SMTP server does not offer STARTTLS and SMTP_TLS=required$/);
        expect(sink.received).toEqual([]);
      } else {
        // nodemailer's requireTLS sends STARTTLS regardless: still TLS, still verified.
        expect(outcome).toEqual({ accepted: envelope.to, rejected: [] });
        expect(sink.received.map((r) => r.secure)).toEqual([true]);
      }
    });
  });

  it("opportunistic: delivers in plaintext to a server without STARTTLS", async () => {
    await withSink(null, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "opportunistic" });
      expect(outcome).toEqual({ accepted: envelope.to, rejected: [] });
      expect(sink.received.map((r) => r.secure)).toEqual([false]);
    });
  });

  it("opportunistic: upgrades when STARTTLS is offered", async () => {
    await withSink({ cert: "ca-signed" }, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "opportunistic", caFile: certs.caFile });
      expect(outcome).toEqual({ accepted: envelope.to, rejected: [] });
      expect(sink.received.map((r) => r.secure)).toEqual([true]);
    });
  });

  it("opportunistic: still verifies the certificate, and does not fall back to plaintext", async () => {
    await withSink({ cert: "self-signed" }, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "opportunistic", caFile: certs.caFile });
      expectRefused(outcome, /TLS with the SMTP server failed \(STARTTLS, SMTP_TLS=opportunistic\)/);
      expect(sink.received).toEqual([]);
    });
  });

  it("none: stays in plaintext although STARTTLS is offered", async () => {
    await withSink({ cert: "self-signed" }, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "none" });
      expect(outcome).toEqual({ accepted: envelope.to, rejected: [] });
      expect(sink.received.map((r) => r.secure)).toEqual([false]);
    });
  });

  it("smtps: TLS from the first byte whatever SMTP_TLS says, certificate verified", async () => {
    await withSink({ cert: "ca-signed", implicit: true }, async (sink) => {
      for (const tls of ["required", "none"] as const) {
        const outcome = await sendOnce({ url: variant.url(sink), tls, caFile: certs.caFile });
        expect(outcome).toEqual({ accepted: envelope.to, rejected: [] });
      }
      expect(sink.received.map((r) => r.secure)).toEqual([true, true]);
    });
    await withSink({ cert: "self-signed", implicit: true }, async (sink) => {
      const outcome = await sendOnce({ url: variant.url(sink), tls: "none", caFile: certs.caFile });
      expectRefused(outcome, /TLS with the SMTP server failed \(smtps\): .*self-signed certificate/);
      expect(sink.received).toEqual([]);
    });
  });
});

describe("SMTP_TLS=required with nodemailer's URL parameters", () => {
  const weakening = "ignoreTLS=true&opportunisticTLS=true&requireTLS=false&tls.rejectUnauthorized=false";

  it("cannot be undone by parameters that would skip STARTTLS or accept any certificate", async () => {
    await withSink({ cert: "self-signed" }, async (sink) => {
      const outcome = await sendOnce({ url: `${sink.url}?${weakening}`, tls: "required", caFile: certs.caFile });
      expectRefused(outcome, /SMTP_TLS=required.*self-signed certificate/);
      expect(sink.received).toEqual([]);
    });
    await withSink(null, async (sink) => {
      const outcome = await sendOnce({ url: `${sink.url}?${weakening}`, tls: "required" });
      expectRefused(outcome, /STARTTLS.*SMTP_TLS=required/);
      expect(sink.received).toEqual([]);
    });
  });
});

describe("SMTP_CA_FILE", () => {
  it("is read when the transport is created: a missing or non-PEM file stops the start, naming the variable", () => {
    const missing = `${certs.caFile}.missing`;
    expect(() => createSmtpTransport({ url: "smtp://127.0.0.1:25", poolSize: 1, tls: "required", caFile: missing })).toThrow(ConfigError);
    expect(() => createSmtpTransport({ url: "smtp://127.0.0.1:25", poolSize: 1, tls: "required", caFile: missing })).toThrow(/SMTP_CA_FILE: cannot read/);
    const notPem = `${certs.caFile}.txt`;
    writeFileSync(notPem, "not a certificate\n");
    expect(() => createSmtpTransport({ url: "smtp://user:pw@127.0.0.1:25", poolSize: 1, caFile: notPem })).toThrow(/SMTP_CA_FILE: .* holds no PEM certificate/);
  });
});

describe("the service with SMTP_TLS=required", () => {
  it("approves and delivers a message over STARTTLS to a server whose certificate SMTP_CA_FILE trusts", async () => {
    const sink = await startSmtpSink({ tls: certs.server });
    const a = await startAirlock({ SMTP_URL: sink.url, SMTP_TLS: "required", SMTP_CA_FILE: certs.caFile });
    try {
      const m = (await a.call("author", "POST", "/api/messages", { subject: "Over TLS", text: "x", audience: { addresses: ["tls@corp.example"] } })).body;
      await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
      await a.until("sent", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "sent");
      const delivered = sink.received.filter((r) => r.mail.messageId === m.messageId);
      expect(delivered.map((r) => [r.to, r.secure])).toEqual([[["tls@corp.example"], true]]);
      // Everything else the service sent (approval requests) went over TLS too.
      expect(sink.received.every((r) => r.secure)).toBe(true);
    } finally {
      await a.stop();
      await sink.close();
    }
  });
});
