/** The dashboard's view of a staged send (issue 16): each phase, the wait's countdown, signals against thresholds, a halt, the buttons. */
import { describe, expect, it } from "vitest";
import type { Message, WaveProgress } from "../../src/domain/message.js";
import { cardView, headline } from "../../src/http/dashboard/view-model.js";
import { createDashboardViews, type Frame } from "../../src/http/dashboard/views.js";
import { evidenceView, signalRows } from "../../src/http/dashboard/waves-view.js";

const NOW = Date.parse("2026-11-22T14:00:00Z");
const iso = (ms: number) => new Date(ms).toISOString();
const views = createDashboardViews();
/** A rendered fragment's text, as a reader gets it (tags dropped, spaces collapsed). */
const text = (html: string) => html.replace(/<[^>]+>/g, "").replace(/\s+/g, " ");

function waves(over: Partial<WaveProgress> = {}): WaveProgress {
  return {
    phase: "canary",
    seedAudience: null,
    seed: 3,
    canary: 100,
    rest: 9_897,
    canarySeed: "ab".repeat(16),
    startedAt: { seed: iso(NOW - 120_000), canary: iso(NOW - 60_000), rest: null },
    waitUntil: null,
    handed: 80,
    signals: { failures: 0, bounces: 0, replies: 0, autoReplies: 0, reports: 0 },
    thresholds: { replies: 3, reports: 1, bouncePercent: 2, failurePercent: 2 },
    haltedBy: null,
    ...over,
  };
}

function staged(w: Partial<WaveProgress> = {}, over: Partial<Message> = {}): Message {
  return {
    id: "9",
    revision: 1,
    state: "sending",
    subject: "Policy",
    text: "x",
    html: null,
    markdown: "",
    template: "",
    from: "comms@corp.example",
    audience: { lists: ["all-staff"], addresses: [] },
    toHeader: "all-staff",
    recipientCount: 10_000,
    author: "author@corp.example",
    approvals: [],
    digest: "0".repeat(64),
    correction: null,
    purge: null,
    waves: waves(w),
    requiredApprovals: 2,
    holdSeconds: 900,
    sendAt: null,
    releaseAt: iso(NOW - 130_000),
    expiresAt: null,
    createdAt: iso(NOW - 3600_000),
    submittedAt: iso(NOW - 3600_000),
    updatedAt: iso(NOW - 60_000),
    messageId: "<x@corp.example>",
    counts: { queued: 9_920, inFlight: 0, sent: 80, failed: 0, skipped: 0, corrected: 0, correctionFailed: 0 },
    possibleDuplicates: 0,
    recall: null,
    rejection: null,
    paused: null,
    ...over,
  };
}

const stepsOf = (m: Message) => cardView(m, NOW, true, true).waves!.steps.map((s) => [s.key, s.statusLabel]);

describe("a staged send, phase by phase", () => {
  it("planning: no sizes yet, no signals, nothing to continue", () => {
    const m = staged({ phase: "planning", seed: 0, canary: 0, rest: 0, canarySeed: null, startedAt: { seed: null, canary: null, rest: null }, handed: 0 }, { counts: { ...staged().counts, sent: 0 } });
    expect(headline(m, NOW)).toBe("Planning the waves for 10,000 people");
    const card = cardView(m, NOW, true, true);
    expect(card.waves).toMatchObject({ phase: "planning", phaseLabel: "planning the waves", planned: false, signals: null, waitCountdown: null });
    expect(card.waves!.steps.map((s) => s.detail)).toEqual(["size set at release", "size set at release", "signals are watched before the rest starts", "size set at release"]);
    expect(card).toMatchObject({ haltable: true, continuable: false, pausable: false, resumable: false, countdownHeadline: null });
  });

  it("approval: a scheduled staged message says its waves are planned at release", () => {
    const m = staged({ phase: "approval", seed: 0, canary: 0, rest: 0, handed: 0, startedAt: { seed: null, canary: null, rest: null } }, { state: "scheduled", releaseAt: iso(NOW + 120_000) });
    const card = cardView(m, NOW, true, true);
    expect(card.headline).toBe("Going out in 2 minutes to 10,000 people");
    expect(card.countdownAt).toBe(m.releaseAt);
    expect(card.waves!.phaseLabel).toBe("waves planned at release");
    expect(card).toMatchObject({ haltable: false, continuable: false });
  });

  it("canary: which wave is going, the sizes, when each started, signals against thresholds", () => {
    const m = staged();
    expect(headline(m, NOW)).toBe("Canary going out: 80 of 10,000 people so far");
    const card = cardView(m, NOW, true, true);
    expect(card.waves!.phaseLabel).toBe("canary going out");
    expect(card.waves!.steps).toMatchObject([
      { key: "seed", status: "done", detail: "3 recipients · started 22 November 2026, 13:58 UTC" },
      { key: "canary", status: "current", current: true, detail: "100 recipients · started 22 November 2026, 13:59 UTC" },
      { key: "wait", status: "upcoming", statusLabel: "not started", countdownAt: null },
      { key: "rest", status: "upcoming", detail: "9,897 recipients" },
    ]);
    expect(card.waves!.signals!.map((s) => [s.label, s.value, s.reached])).toEqual([
      ["Human replies", "0 / 3", false],
      ["Problem reports", "0 / 1", false],
      ["Bounces", "0% / 2% (0 of 103)", false],
      ["Permanent failures", "0% / 2% (0 of 103)", false],
      ["Auto-replies", "0 (not counted)", false],
    ]);
    // Halt and Continue (start the rest now) for ops; Pause and Resume are not offered for a staged send.
    expect(card).toMatchObject({ haltable: true, continuable: true, pausable: false, resumable: false });
    expect(cardView(m, NOW, true, false)).toMatchObject({ haltable: false, continuable: false });
    // A seed audience is named with the seed cohort.
    const seeded = cardView(staged({ seedAudience: "leads" }), NOW, true, true);
    expect(seeded.waves!.steps[0]).toMatchObject({ detail: "3 recipients (the author, the approvers and audience leads) · started 22 November 2026, 13:58 UTC" });
  });

  it("wait: counts down to the rest, in the headline and in the steps, rendered by the server", () => {
    const m = staged({ phase: "wait", handed: 103, waitUntil: iso(NOW + 250_000) }, { counts: { ...staged().counts, sent: 103 } });
    expect(headline(m, NOW)).toBe("Waiting for signals: 103 of 10,000 people have it; the rest goes out in 4 minutes 10 seconds");
    const card = cardView(m, NOW, true, true);
    expect(card.countdownHeadline).toEqual({ before: "Waiting for signals: 103 of 10,000 people have it; the rest goes out ", after: "" });
    expect(card.countdownAt).toBe(iso(NOW + 250_000));
    expect(card.headlineCountdown).toBe("in 4 minutes 10 seconds");
    expect(card.waves).toMatchObject({ waitUntil: iso(NOW + 250_000), waitUntilLabel: "22 November 2026, 14:04 UTC", waitCountdown: "in 4 minutes 10 seconds" });
    expect(card.waves!.steps[2]).toMatchObject({ status: "current", detail: "until 22 November 2026, 14:04 UTC; the rest starts ", countdownAt: iso(NOW + 250_000), countdown: "in 4 minutes 10 seconds" });
    expect(stepsOf(m)).toEqual([["seed", "done"], ["canary", "done"], ["wait", "now"], ["rest", "not started"]]);
    expect(card).toMatchObject({ haltable: true, continuable: true });
    // A second later the server says one second less (the client script ticks the same rule).
    expect(cardView(m, NOW + 1000, true, true).headlineCountdown).toBe("in 4 minutes 9 seconds");
  });

  it("rest: going out to the rest, Halt only (nothing left to continue)", () => {
    const m = staged({ phase: "rest", handed: 103, startedAt: { seed: iso(NOW - 900_000), canary: iso(NOW - 800_000), rest: iso(NOW - 10_000) } }, { counts: { ...staged().counts, sent: 2_500 } });
    expect(headline(m, NOW)).toBe("Going out now to the rest: 2,500 of 10,000 people so far");
    const card = cardView(m, NOW, true, true);
    expect(stepsOf(m)).toEqual([["seed", "done"], ["canary", "done"], ["wait", "done"], ["rest", "now"]]);
    expect(card.waves!.steps[3]!.detail).toBe("9,897 recipients · started 22 November 2026, 13:59 UTC");
    expect(card).toMatchObject({ haltable: true, continuable: false, countdownHeadline: null });
  });

  it("halted by a signal: says so with the reason and the signal, offers Continue, no countdown", () => {
    const haltedBy = { kind: "reply" as const, at: iso(NOW - 30_000), count: 3 };
    const m = staged(
      { phase: "wait", waitUntil: iso(NOW + 200_000), handed: 103, haltedBy, signals: { failures: 1, bounces: 3, replies: 3, autoReplies: 7, reports: 0 } },
      { paused: { by: "airlock", at: iso(NOW - 30_000), reason: "signal: 3 human replies (threshold 3)" } },
    );
    expect(headline(m, NOW)).toBe("Halted by Airlock during the wait: 80 of 10,000 people have it, the rest wait");
    const card = cardView(m, NOW, true, true);
    expect(card.paused).toMatchObject({ byAirlock: true, reason: "signal: 3 human replies (threshold 3)" });
    expect(card.waves!.phaseLabel).toBe("halted during the wait");
    expect(card.waves!.haltedBy).toEqual({ kind: "reply", count: 3, atLabel: "22 November 2026, 13:59 UTC", text: "3 human replies at 22 November 2026, 13:59 UTC" });
    expect(card.waves!.steps[2]).toMatchObject({ status: "halted", statusLabel: "halted", countdownAt: null, detail: "was to end 22 November 2026, 14:03 UTC; the rest starts only when someone continues the send" });
    expect(card.countdownHeadline).toBeNull();
    expect(card.waves!.signals!.filter((s) => s.reached).map((s) => [s.kind, s.halted])).toEqual([
      ["reply", true],
      ["bounce", false], // 3 of 103 is 2.9%, over 2%
    ]);
    expect(card).toMatchObject({ haltable: false, continuable: true, pausable: false, resumable: false });
  });

  it("halted by a person in the rest: Continue lifts it", () => {
    const m = staged({ phase: "rest" }, { paused: { by: "ops@corp.example", at: iso(NOW), reason: "relay overloaded" } });
    expect(headline(m, NOW)).toBe("Halted during the rest: 80 of 10,000 people have it, the rest wait");
    expect(cardView(m, NOW, true, true)).toMatchObject({ haltable: false, continuable: true, waves: { phaseLabel: "halted during the rest" } });
    // MessageService.halt records a person's words as "halted: <words>"; the banner says "Halted: <words>".
    const byHalt = staged({ phase: "wait" }, { paused: { by: "ops@corp.example", at: iso(NOW), reason: "halted: amounts wrong" } });
    expect(cardView(byHalt, NOW, true, true).paused).toMatchObject({ reason: "halted: amounts wrong", haltReason: "amounts wrong" });
    expect(text(views.card(cardView(byHalt, NOW, true, true)))).toContain("Halted: amounts wrong (by ops@corp.example at 22 November 2026, 14:00 UTC)");
  });

  it("sent, or recalled during the canary: every wave done, or the later ones never started", () => {
    const sent = staged({ phase: "rest" }, { state: "sent" });
    expect(stepsOf(sent).map(([, s]) => s)).toEqual(["done", "done", "done", "done"]);
    expect(cardView(sent, NOW, true, true)).toMatchObject({ haltable: false, continuable: false, waves: { phaseLabel: "every wave went out" } });
    const recalled = staged({ phase: "canary" }, { state: "correcting", recall: { by: "ops", at: iso(NOW), reason: "x", correctionText: null, deliveredAtRecall: 80 } });
    expect(stepsOf(recalled)).toEqual([["seed", "done"], ["canary", "stopped by the recall"], ["wait", "never started: recalled"], ["rest", "never started: recalled"]]);
    // Its correction pauses and resumes like any other.
    expect(cardView(recalled, NOW, true, true)).toMatchObject({ haltable: false, continuable: false, pausable: true, waves: { phaseLabel: "recalled during the canary" } });
  });

  it("a message sent all at once has no waves and keeps Pause", () => {
    expect(cardView(staged({}, { waves: null }), NOW, true, true)).toMatchObject({ waves: null, haltable: false, continuable: false, pausable: true });
  });
});

describe("signals against thresholds", () => {
  it("halts replies and reports at the threshold, bounces and failures only over their share", () => {
    // The base is the early waves as planned (seed + canary), not those handed so far: one early bounce is not 100%.
    const at = (signals: Partial<WaveProgress["signals"]>, early = 100) => signalRows(waves({ seed: 0, canary: early, handed: 1, signals: { ...waves().signals, ...signals } }));
    expect(at({ replies: 2 })[0]).toMatchObject({ value: "2 / 3", reached: false });
    expect(at({ replies: 3 })[0]).toMatchObject({ value: "3 / 3", reached: true });
    expect(at({ reports: 1 })[1]).toMatchObject({ value: "1 / 1", reached: true });
    expect(at({ bounces: 2 })[2]).toMatchObject({ value: "2% / 2% (2 of 100)", reached: false });
    expect(at({ bounces: 3 })[2]).toMatchObject({ reached: true });
    expect(at({ failures: 1 }, 3)[3]).toMatchObject({ value: "33.33% / 2% (1 of 3)", reached: true });
    expect(at({ failures: 0 }, 0)[3]).toMatchObject({ value: "0% / 2% (0 of 0)", reached: false });
  });
});

describe("evidence", () => {
  it("says what was seen, by whom, when", () => {
    expect(evidenceView({ kind: "reply", at: iso(NOW), from: "ann@corp.example", excerpt: "Is this real? <b>" })).toEqual({
      kindLabel: "Human reply",
      iso: iso(NOW),
      atLabel: "22 November 2026, 14:00 UTC",
      who: "ann@corp.example",
      excerpt: "Is this real? <b>",
      status: null,
    });
    expect(evidenceView({ kind: "bounce", at: iso(NOW), index: 41, status: "5.1.1", diagnostic: "user unknown" })).toMatchObject({ kindLabel: "Bounce", who: "recipient no. 42 of the audience", status: "5.1.1: user unknown" });
    expect(evidenceView({ kind: "report", at: iso(NOW) })).toMatchObject({ kindLabel: "Problem report", who: null, excerpt: null, status: null });
  });
});

describe("the card and the halt page as rendered (no script)", () => {
  const frame: Frame = { title: "t", user: { name: "Ops", email: "ops@corp.example", roles: ["ops"] }, csrf: "tok", nav: "none", canSeeQueues: true, hasOutbox: false, serverNow: NOW };

  it("shows the wave, the sizes, the countdown and the signals in words, with Halt and Continue", () => {
    const m = staged({ phase: "wait", handed: 103, waitUntil: iso(NOW + 250_000), signals: { failures: 0, bounces: 0, replies: 2, autoReplies: 0, reports: 0 } });
    const html = views.card(cardView(m, NOW, true, true));
    expect(text(html)).toContain("Waiting for signals: 80 of 10,000 people have it; the rest goes out in 4 minutes 10 seconds");
    expect(text(html)).toContain("Staged send: waiting for signals before the rest");
    expect(text(html)).toContain("Canary (done): 100 recipients");
    expect(text(html)).toContain("Wait (now): until 22 November 2026, 14:04 UTC; the rest starts in 4 minutes 10 seconds");
    expect(text(html)).toContain("The rest (not started): 9,897 recipients");
    expect(text(html)).toContain("Human replies2 / 3");
    expect(html).toContain(`data-countdown="${iso(NOW + 250_000)}"`);
    expect(html).toContain('href="/messages/9/halt"');
    expect(html).toContain('href="/messages/9/continue"');
    expect(html).not.toContain('href="/messages/9/pause"');
  });

  it("escapes a halt reason and shows it as the banner", () => {
    const m = staged({ haltedBy: { kind: "report", at: iso(NOW), count: 1 } }, { paused: { by: "airlock", at: iso(NOW), reason: "signal: <script>alert(1)</script>" } });
    const html = views.card(cardView(m, NOW, true, true));
    expect(html).not.toContain("<script>");
    expect(text(html)).toContain("Halted: signal: &lt;script&gt;alert(1)&lt;/script&gt; (by Airlock at 22 November 2026, 14:00 UTC, on 1 problem report at 22 November 2026, 14:00 UTC)");
    expect(html).not.toContain('href="/messages/9/halt"');
    expect(html).toContain('href="/messages/9/continue"');
  });

  it("renders the halt and continue confirmation forms with the CSRF token", () => {
    const card = cardView(staged({ phase: "wait", waitUntil: iso(NOW + 60_000) }), NOW, true, true);
    const halt = views.page("halt", frame, { mode: "halt", card, notAllowed: null, remaining: 9_920, reason: "", error: null });
    expect(halt).toContain('action="/messages/9/halt"');
    expect(halt).toContain('name="_csrf" value="tok"');
    expect(text(halt)).toContain("9,920 recipients still waiting would be held");
    const cont = views.page("halt", frame, { mode: "continue", card, notAllowed: null, remaining: 9_920, reason: "", error: null });
    expect(cont).toContain('action="/messages/9/continue"');
    expect(text(cont)).toContain("Continuing starts the last wave now, without waiting for the end of the wait: 9,920 recipients still waiting");
    const refused = views.page("halt", frame, { mode: "halt", card: cardView(staged(), NOW, true, false), notAllowed: "for ops", remaining: 0, reason: "", error: null });
    expect(refused).not.toContain("<form method=\"post\" action=\"/messages/9/halt\"");
  });
});
