/** The mapping from what the inbound listener hears to signals: which count, as what, with which dedupe key. */
import { describe, expect, it } from "vitest";
import type { BounceEvent, ReplyEvent } from "../../src/inbound/listener.js";
import { EVIDENCE_LIMITS, inboundSignals } from "../../src/inbound/signal-handler.js";
import type { SignalAnswer, SignalEvidence, SignalKind, SignalSink } from "../../src/waves/signals.js";

interface Call {
  id: string;
  kind: Exclude<SignalKind, "failure">;
  evidence: Omit<SignalEvidence, "kind" | "at">;
  dedupe: string;
}

/** A sink that records each call and counts a dedupe key once, as the store does. */
function recordingSink(answer?: SignalAnswer) {
  const calls: Call[] = [];
  const seen = new Set<string>();
  const sink: SignalSink = {
    async record(id, kind, evidence, dedupe) {
      calls.push({ id, kind, evidence, dedupe });
      if (answer) return answer;
      const key = `${id}\n${dedupe}`;
      const counted = !seen.has(key);
      seen.add(key);
      return { ok: true, counted, halted: false };
    },
  };
  return { sink, calls };
}

function logs() {
  const lines: string[] = [];
  return { lines, logger: { info: (m: string) => void lines.push(`info ${m}`), warn: (m: string) => void lines.push(`warn ${m}`) } };
}

const bounce = (over: Partial<BounceEvent> = {}): BounceEvent => ({
  messageId: "42",
  index: 7,
  outcome: "failed",
  action: "failed",
  status: "5.1.1",
  permanent: true,
  diagnostic: "550 5.1.1 <m.rossi@example.org>: Recipient address rejected: User unknown",
  finalRecipient: "m.rossi@example.org",
  mailMessageId: "<dsn-1@mx.example.org>",
  ...over,
});

const reply = (over: Partial<ReplyEvent> = {}): ReplyEvent => ({
  messageId: "42",
  token: "w1",
  automatic: false,
  reasons: [],
  from: "alice@corp.example",
  excerpt: "This went to everyone, the date is wrong.",
  mailMessageId: "<reply-1@corp.example>",
  ...over,
});

describe("bounces", () => {
  it("counts a permanent failure as a bounce of its recipient, keyed by the index", async () => {
    const { sink, calls } = recordingSink();
    await inboundSignals(sink, logs().logger).onBounce(bounce());
    expect(calls).toEqual([
      {
        id: "42",
        kind: "bounce",
        evidence: { index: 7, from: "m.rossi@example.org", status: "5.1.1", diagnostic: "550 5.1.1 <m.rossi@example.org>: Recipient address rejected: User unknown" },
        dedupe: "bounce:7",
      },
    ]);
  });

  it("logs a delayed DSN and a give-up after temporary failures without counting them", async () => {
    const { sink, calls } = recordingSink();
    const { logger, lines } = logs();
    const h = inboundSignals(sink, logger);
    await h.onBounce(bounce({ outcome: "delayed", action: "delayed", status: "4.4.1", permanent: false }));
    await h.onBounce(bounce({ outcome: "failed", status: "4.4.7", permanent: false }));
    expect(calls).toEqual([]);
    expect(lines).toEqual([
      "info message 42 bounce not counted: recipient 7 delayed 4.4.1 is not a permanent failure",
      "info message 42 bounce not counted: recipient 7 failed 4.4.7 is not a permanent failure",
    ]);
  });

  it("keys every DSN of one recipient alike (one recipient bounces once) and different recipients apart", async () => {
    const { sink, calls } = recordingSink();
    const { logger, lines } = logs();
    const h = inboundSignals(sink, logger);
    await h.onBounce(bounce({ mailMessageId: "<dsn-1@mx>" }));
    await h.onBounce(bounce({ mailMessageId: "<dsn-2@other-mx>", status: "5.1.10", diagnostic: "other words" }));
    await h.onBounce(bounce({ index: 8 }));
    expect(calls.map((c) => c.dedupe)).toEqual(["bounce:7", "bounce:7", "bounce:8"]);
    expect(lines[1]).toBe("info message 42 bounce already recorded, counted once (recipient 7 failed 5.1.10)");
  });

  it("cuts the evidence to size and leaves out what the DSN did not say", async () => {
    const { sink, calls } = recordingSink();
    const h = inboundSignals(sink, logs().logger);
    await h.onBounce(bounce({ finalRecipient: `${"x".repeat(300)}@example.org`, status: `5.1.1 ${"y".repeat(100)}`, diagnostic: `line one\r\nline two ${"z".repeat(1000)}` }));
    const ev = calls[0]!.evidence;
    expect(ev.from!.length).toBeLessThanOrEqual(EVIDENCE_LIMITS.from);
    expect(ev.status!.length).toBeLessThanOrEqual(EVIDENCE_LIMITS.status);
    expect(ev.diagnostic!.length).toBeLessThanOrEqual(EVIDENCE_LIMITS.diagnostic);
    expect(ev.diagnostic).toMatch(/^line one line two z+…$/);
    expect(ev.from!.endsWith("…")).toBe(true);

    const bare: BounceEvent = { messageId: "42", index: 3, outcome: "failed", action: "failed", status: "5.0.0", permanent: true };
    await h.onBounce(bare);
    expect(calls[1]!.evidence).toEqual({ index: 3, status: "5.0.0" });
  });
});

describe("replies", () => {
  it("records a human reply as a reply and an automatic one as an autoReply", async () => {
    const { sink, calls } = recordingSink();
    const { logger, lines } = logs();
    const h = inboundSignals(sink, logger);
    await h.onReply(reply());
    await h.onReply(reply({ automatic: true, reasons: ["Auto-Submitted: auto-replied"], from: "bob@corp.example", excerpt: "I am out of the office.", mailMessageId: "<ooo-1@corp.example>" }));
    expect(calls.map(({ kind, evidence }) => ({ kind, evidence }))).toEqual([
      { kind: "reply", evidence: { from: "alice@corp.example", excerpt: "This went to everyone, the date is wrong." } },
      { kind: "autoReply", evidence: { from: "bob@corp.example", excerpt: "I am out of the office." } },
    ]);
    expect(lines).toEqual([
      "info message 42 reply recorded (human reply)",
      "info message 42 autoReply recorded (automatic reply (Auto-Submitted: auto-replied))",
    ]);
  });

  it("keys a reply by its Message-ID (angle brackets aside), so a re-delivered reply counts once", async () => {
    const { sink, calls } = recordingSink();
    const h = inboundSignals(sink, logs().logger);
    await h.onReply(reply({ mailMessageId: "<reply-1@corp.example>" }));
    await h.onReply(reply({ mailMessageId: "reply-1@corp.example", excerpt: "re-encoded on the way" }));
    await h.onReply(reply({ mailMessageId: "<reply-2@corp.example>" }));
    const [a, b, c] = calls.map((x) => x.dedupe);
    expect(a).toMatch(/^reply:m:[0-9a-f]{32}$/);
    expect(b).toBe(a);
    expect(c).not.toBe(a);
  });

  it("without a Message-ID, keys a reply by its sender and excerpt", async () => {
    const { sink, calls } = recordingSink();
    const h = inboundSignals(sink, logs().logger);
    const noId = { mailMessageId: undefined } as Partial<ReplyEvent>;
    await h.onReply(reply(noId));
    await h.onReply(reply({ ...noId, from: "ALICE@corp.example" }));
    await h.onReply(reply({ ...noId, excerpt: "Something else." }));
    await h.onReply(reply({ ...noId, from: "carl@corp.example" }));
    const keys = calls.map((x) => x.dedupe);
    expect(keys[0]).toMatch(/^reply:h:[0-9a-f]{32}$/);
    expect(keys[1]).toBe(keys[0]);
    expect(new Set(keys).size).toBe(3);
  });

  it("cuts the excerpt and the sender to size, and leaves out an empty sender (the null return path)", async () => {
    const { sink, calls } = recordingSink();
    const h = inboundSignals(sink, logs().logger);
    await h.onReply(reply({ from: "", excerpt: `first line\n${"word ".repeat(300)}\u0007` }));
    const ev = calls[0]!.evidence;
    expect(ev.from).toBeUndefined();
    expect(ev.excerpt!.length).toBeLessThanOrEqual(EVIDENCE_LIMITS.excerpt);
    expect(ev.excerpt).toMatch(/^first line\nword word .*…$/s);
    expect(ev.excerpt).not.toContain("\u0007");
  });
});

describe("answers of the store", () => {
  it("logs a message that does not exist or was never sent, and accepts the mail (no throw)", async () => {
    const { logger, lines } = logs();
    await inboundSignals(recordingSink({ ok: false, err: "not_found" }).sink, logger).onBounce(bounce());
    await inboundSignals(recordingSink({ ok: false, err: "not_sent" }).sink, logger).onReply(reply());
    expect(lines).toEqual([
      "warn message 42 bounce not recorded (recipient 7 failed 5.1.1): there is no such message; mail accepted and dropped",
      "warn message 42 reply not recorded (human reply): the message was never sent; mail accepted and dropped",
    ]);
  });

  it("says when a signal halted the send", async () => {
    const { logger, lines } = logs();
    await inboundSignals(recordingSink({ ok: true, counted: true, halted: true }).sink, logger).onReply(reply());
    expect(lines).toEqual(["warn message 42 halted by a reply signal (human reply)"]);
  });

  it("lets a failing store fail the handler (the listener answers 451 and the mail comes again)", async () => {
    const sink: SignalSink = { record: () => Promise.reject(new Error("Connection is closed.")) };
    await expect(inboundSignals(sink, logs().logger).onBounce(bounce())).rejects.toThrow("Connection is closed.");
  });
});
