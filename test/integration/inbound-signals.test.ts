/**
 * The inbound listener with the signal handler, over real SMTP: what a remote MTA is answered
 * when a signal is counted, not counted, unknown to the store, or the store is down.
 */
import nodemailer from "nodemailer";
import { afterEach, describe, expect, it } from "vitest";
import { startInboundListener, type InboundListener } from "../../src/inbound/listener.js";
import { inboundSignals } from "../../src/inbound/signal-handler.js";
import { Verp } from "../../src/inbound/verp.js";
import type { SignalAnswer, SignalSink } from "../../src/waves/signals.js";
import { dsnFixture } from "../support/dsn-fixtures.js";

const verp = new Verp({ domain: "bounces.corp.example", secret: "inbound-signals-secret-0123456789abcdef01" });
const quiet = { info() {}, warn() {} };

const open: InboundListener[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((l) => l.close()));
});

async function listenWith(answer: () => Promise<SignalAnswer>) {
  const calls: Array<{ id: string; kind: string; dedupe: string }> = [];
  const sink: SignalSink = {
    record: (id, kind, _evidence, dedupe) => {
      calls.push({ id, kind, dedupe });
      return answer();
    },
  };
  const l = await startInboundListener({ verp, port: 0, host: "127.0.0.1", handler: inboundSignals(sink, quiet), handlerTimeoutMs: 2_000 });
  open.push(l);
  const t = nodemailer.createTransport({ host: "127.0.0.1", port: l.port, secure: false, ignoreTLS: true });
  return { calls, t };
}

const humanReply = (to: string) =>
  Buffer.from(
    [`From: Alice <alice@corp.example>`, `To: ${to}`, "Subject: Re: Holiday calendar", "Message-ID: <r-1@corp.example>", "Content-Type: text/plain; charset=utf-8", "", "The dates are wrong."].join("\r\n"),
  );

describe("inbound signals over SMTP", () => {
  it("records a permanent bounce and a human reply, and accepts a delayed DSN without recording it", async () => {
    const { calls, t } = await listenWith(async () => ({ ok: true, counted: true, halted: false }));
    const failed = verp.bounceAddress("42", 1);
    const delayed = verp.bounceAddress("42", 2);
    const reply = verp.replyAddress("42", "w1");
    expect((await t.sendMail({ envelope: { from: "", to: failed }, raw: dsnFixture("postfix-failed.eml", failed) })).accepted).toEqual([failed]);
    expect((await t.sendMail({ envelope: { from: "", to: delayed }, raw: dsnFixture("postfix-delayed.eml", delayed) })).accepted).toEqual([delayed]);
    expect((await t.sendMail({ envelope: { from: "alice@corp.example", to: reply }, raw: humanReply(reply) })).accepted).toEqual([reply]);
    t.close();
    expect(calls).toEqual([
      { id: "42", kind: "bounce", dedupe: "bounce:1" },
      { id: "42", kind: "reply", dedupe: expect.stringMatching(/^reply:m:[0-9a-f]{32}$/) },
    ]);
  });

  it("accepts mail for a message the store does not know (250: refusing after DATA would bounce a bounce)", async () => {
    const { calls, t } = await listenWith(async () => ({ ok: false, err: "not_found" }));
    const to = verp.bounceAddress("77", 0);
    const info = await t.sendMail({ envelope: { from: "", to }, raw: dsnFixture("postfix-failed.eml", to) });
    t.close();
    expect(info.accepted).toEqual([to]);
    expect(info.response).toMatch(/^250 /);
    expect(calls).toHaveLength(1);
  });

  it("answers 451 when the store fails, so the MTA tries again later", async () => {
    const { t } = await listenWith(() => Promise.reject(new Error("Connection is closed.")));
    const to = verp.replyAddress("42", "w1");
    const err = await t.sendMail({ envelope: { from: "alice@corp.example", to }, raw: humanReply(to) }).then(
      () => null,
      (e: { responseCode?: number }) => e,
    );
    t.close();
    expect(err?.responseCode).toBe(451);
  });
});
