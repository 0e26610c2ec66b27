import { describe, expect, it } from "vitest";
import fc from "fast-check";
import type { Message } from "../../src/domain/message.js";
import { cardView, countdown, headline, IMMINENT_MS, pendingOrder, progressOf, urgencyOf } from "../../src/http/dashboard/view-model.js";

const NOW = Date.parse("2026-11-22T14:00:00Z");

function message(over: Partial<Message> = {}): Message {
  return {
    id: "7",
    revision: 1,
    state: "pending_approval",
    subject: "Policy",
    text: "x",
    html: null,
    markdown: "",
    template: "",
    from: "comms@corp.example",
    audience: { lists: ["all-staff"], addresses: ["a@corp.example"] },
    toHeader: "all-staff",
    recipientCount: 840_000,
    author: "author@corp.example",
    approvals: [],
    digest: "0".repeat(64),
    correction: null,
    purge: null,
    waves: null,
    requiredApprovals: 2,
    holdSeconds: 900,
    sendAt: null,
    releaseAt: null,
    expiresAt: null,
    createdAt: new Date(NOW - 3600_000).toISOString(),
    submittedAt: new Date(NOW - 3600_000).toISOString(),
    updatedAt: new Date(NOW - 60_000).toISOString(),
    messageId: "<x@corp.example>",
    counts: { queued: 840_000, inFlight: 0, sent: 0, failed: 0, skipped: 0, corrected: 0, correctionFailed: 0 },
    possibleDuplicates: 0,
    recall: null,
    rejection: null,
    paused: null,
    ...over,
  };
}

describe("countdown", () => {
  it("says the largest two units", () => {
    expect(countdown(0)).toBe("now");
    expect(countdown(-5)).toBe("now");
    expect(countdown(1)).toBe("in 1 second");
    expect(countdown(59_001)).toBe("in 1 minute");
    expect(countdown(125_000)).toBe("in 2 minutes 5 seconds");
    expect(countdown(3600_000)).toBe("in 1 hour");
    expect(countdown(3 * 3600_000 + 10 * 60_000)).toBe("in 3 hours 10 minutes");
    expect(countdown(2 * 86400_000 + 3600_000)).toBe("in 2 days 1 hour");
  });

  it("never says 'now' before the time, and never grows as time passes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 * 86400_000 }), fc.integer({ min: 0, max: 1000 }), (ms, dt) => {
        expect(countdown(ms)).not.toBe("now");
        const secs = (s: string) => {
          let total = 0;
          for (const [, n, u] of s.matchAll(/(\d+) (day|hour|minute|second)/g)) total += Number(n) * { day: 86400, hour: 3600, minute: 60, second: 1 }[u as "day"];
          return total;
        };
        expect(secs(countdown(Math.max(1, ms - dt)))).toBeLessThanOrEqual(secs(countdown(ms)));
      }),
    );
  });
});

describe("headline and urgency", () => {
  it("makes an imminent company-wide send impossible to miss", () => {
    const m = message({ state: "scheduled", approvals: [{ by: "b", at: "", comment: null, digest: null }, { by: "c", at: "", comment: null, digest: null }], releaseAt: new Date(NOW + 120_000).toISOString() });
    expect(headline(m, NOW)).toBe("Going out in 2 minutes to 840,000 people");
    expect(urgencyOf(m, NOW)).toBe("imminent");
    expect(urgencyOf({ ...m, releaseAt: new Date(NOW + IMMINENT_MS + 1).toISOString() }, NOW)).toBe("scheduled");
    const card = cardView(m, NOW, true);
    expect(card.countdownHeadline).toEqual({ before: "Going out ", after: " to 840,000 people" });
    expect(card.headlineCountdown).toBe("in 2 minutes");
    expect(card.recallable).toBe(true);
  });

  it("says what is missing while waiting, and what went out when sending", () => {
    expect(headline(message({ approvals: [{ by: "b", at: "", comment: null, digest: null }] }), NOW)).toBe("Waiting for 1 more approval · would go to 840,000 people");
    const sending = message({ state: "sending", releaseAt: new Date(NOW - 10_000).toISOString(), counts: { queued: 0, inFlight: 50, sent: 12_000, failed: 3, skipped: 0, corrected: 0, correctionFailed: 0 } });
    expect(headline(sending, NOW)).toBe("Going out now: 12,000 of 840,000 people so far");
    const card = cardView(sending, NOW, false);
    expect(card.urgency).toBe("live");
    expect(card.progress).toEqual({ total: 840_000, sent: 12_000, failed: 3, skipped: 0, done: 12_003, percent: 1 });
    expect(card.rate).toBe(1200);
    expect(card.recallable).toBe(false);
  });

  it("counts the correction of a recalled send", () => {
    const m = message({
      state: "correcting",
      recipientCount: 1000,
      counts: { queued: 0, inFlight: 0, sent: 400, failed: 0, skipped: 600, corrected: 100, correctionFailed: 0 },
      recall: { by: "ops", at: new Date(NOW).toISOString(), reason: "x", correctionText: null, deliveredAtRecall: 400 },
    });
    expect(headline(m, NOW)).toBe("Recalled after 400 people received it: correction going out");
    expect(cardView(m, NOW, true)).toMatchObject({ correction: { total: 400, sent: 100, failed: 0, percent: 25 }, recallable: false });
    expect(cardView({ ...m, state: "recalled", counts: { ...m.counts, sent: 0 } }, NOW, true).correction).toBeNull();
  });

  it("links the review page when the message or its correction text waits for the viewer's approval", () => {
    expect(cardView(message({ id: "7" }), NOW, true).review).toBeNull();
    expect(cardView(message({ id: "7" }), NOW, true, false, "original").review).toEqual({ href: "/messages/7/review", label: "Review and approve…" });
    expect(cardView(message({ id: "7", state: "correcting" }), NOW, true, false, "correction").review).toEqual({ href: "/messages/7/review?of=correction", label: "Review the correction text…" });
  });

  it("puts live sends first, then by release time, then those waiting for approval", () => {
    const cards = [
      cardView(message({ id: "1" }), NOW, true),
      cardView(message({ id: "2", state: "scheduled", releaseAt: new Date(NOW + 3600_000).toISOString() }), NOW, true),
      cardView(message({ id: "3", state: "sending", releaseAt: new Date(NOW - 1000).toISOString() }), NOW, true),
      cardView(message({ id: "4", state: "scheduled", releaseAt: new Date(NOW + 60_000).toISOString() }), NOW, true),
    ].sort(pendingOrder);
    expect(cards.map((c) => c.id)).toEqual(["3", "4", "2", "1"]);
  });

  it("keeps progress within 0–100 % whatever the counts", () => {
    fc.assert(
      fc.property(fc.nat(2_000_000), fc.nat(2_000_000), fc.nat(2_000_000), fc.nat(2_000_000), (total, sent, failed, skipped) => {
        const p = progressOf(message({ recipientCount: total, counts: { queued: 0, inFlight: 0, sent, failed, skipped, corrected: 0, correctionFailed: 0 } }));
        expect(p.percent).toBeGreaterThanOrEqual(0);
        expect(p.percent).toBeLessThanOrEqual(100);
      }),
    );
  });
});

describe("a paused fan-out", () => {
  const sending = message({ state: "sending", releaseAt: new Date(NOW - 60_000).toISOString(), counts: { queued: 800_000, inFlight: 0, sent: 40_000, failed: 0, skipped: 0, corrected: 0, correctionFailed: 0 } });
  const paused = { ...sending, paused: { by: "ops@corp.example", at: new Date(NOW - 5000).toISOString(), reason: "relay overloaded" } };
  it("says so in the headline, shows no rate, and offers resume (not pause) to those who may", () => {
    expect(headline(paused, NOW)).toBe("Paused: 40,000 of 840,000 people have it, the rest wait");
    expect(cardView(paused, NOW, true, true)).toMatchObject({ rate: null, pausable: false, resumable: true, paused: { by: "ops@corp.example", reason: "relay overloaded" } });
    expect(cardView(sending, NOW, true, true)).toMatchObject({ pausable: true, resumable: false, paused: null });
  });
  it("offers neither to a viewer who may not pause, nor for a message that is not sending", () => {
    expect(cardView(paused, NOW, true, false)).toMatchObject({ pausable: false, resumable: false });
    expect(cardView(message({ state: "scheduled" }), NOW, true, true)).toMatchObject({ pausable: false, resumable: false });
    expect(headline({ ...paused, state: "correcting" }, NOW)).toBe("Recalled after 40,000 people received it: correction paused");
  });
  it("reads as Airlock's halt, not a person's pause, when Airlock stopped it", () => {
    const halted = { ...sending, paused: { by: "airlock", at: new Date(NOW - 5000).toISOString(), reason: "not sent: digest differs" } };
    expect(headline(halted, NOW)).toBe("Halted by Airlock: 40,000 of 840,000 people have it, the rest wait");
    expect(headline({ ...halted, state: "correcting" }, NOW)).toBe("Recalled after 40,000 people received it: correction halted by Airlock");
    expect(cardView(halted, NOW, true, true).paused).toMatchObject({ byAirlock: true, reason: "not sent: digest differs" });
    expect(cardView(paused, NOW, true, true).paused).toMatchObject({ byAirlock: false });
  });
});
