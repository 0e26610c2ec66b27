/**
 * What the dashboard shows of a staged send (SPEC "Staged sends", issue 16): which wave is going,
 * the wave sizes, the end of the wait after the canary, the signals seen so far against the
 * thresholds that halt, and the evidence behind them. Pure, like view-model.ts: no I/O, no HTTP.
 * Every piece of information is in words too (never a colour alone).
 */
import type { WavePhase, WaveProgress } from "../../domain/message.js";
import { formatDateTime } from "../../notify/format.js";
import type { SignalEvidence, SignalKind } from "../../waves/signals.js";

const numberFormat = new Intl.NumberFormat("en-US");
const percentFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
const n = (x: number) => numberFormat.format(x);
const recipients = (x: number) => `${n(x)} ${x === 1 ? "recipient" : "recipients"}`;

/** The order the phases come in: a wave before the current phase is done. */
const ORDER: readonly WavePhase[] = ["approval", "planning", "seed", "canary", "wait", "rest"];

/** How a phase is said on its own ("Staged send: canary going out"). */
export const PHASE_LABELS: Record<WavePhase, string> = {
  approval: "waves planned at release",
  planning: "planning the waves",
  seed: "seed cohort going out",
  canary: "canary going out",
  wait: "waiting for signals before the rest",
  rest: "the rest going out",
};

/** A phase as part of a sentence: "halted during the canary". */
export const WAVE_NAMES: Record<WavePhase, string> = { approval: "approval", planning: "planning", seed: "seed cohort", canary: "canary", wait: "wait", rest: "rest" };

/** The phases in which Continue starts the rest early (besides any halt). */
export const EARLY_PHASES: readonly WavePhase[] = ["seed", "canary", "wait"];

export type StepStatus = "done" | "current" | "halted" | "upcoming" | "stopped" | "skipped";
const STEP_STATUS_LABELS: Record<StepStatus, string> = {
  done: "done",
  current: "now",
  halted: "halted",
  upcoming: "not started",
  stopped: "stopped by the recall",
  skipped: "never started: recalled",
};

/** Where the send stands: going (or halted), or over: sent to all, or recalled. */
export interface WavesStanding {
  /** Held by the ops pause now (a signal's halt or a person's). */
  halted: boolean;
  ended: "sent" | "recalled" | null;
}

export interface WaveStep {
  key: "seed" | "canary" | "wait" | "rest";
  label: string;
  status: StepStatus;
  /** The status in words, shown next to the step (its colour repeats it, never replaces it). */
  statusLabel: string;
  current: boolean;
  /** "50 recipients · started 22 November 2026, 14:00 UTC". */
  detail: string;
  /** The wait's end while it runs: the client script ticks `countdown` towards it. */
  countdownAt: string | null;
  countdown: string | null;
}

export interface SignalRow {
  kind: SignalKind;
  label: string;
  /** The count against its threshold: "2 / 3", "1.5% / 2% (3 of 200)" (of the early waves' recipients). */
  value: string;
  /** At or over the threshold (replies, reports) or over it (percentages): the send halts. */
  reached: boolean;
  /** This signal is the one that halted the send. */
  halted: boolean;
}

export interface WavesView {
  phase: WavePhase;
  phaseLabel: string;
  /** Sizes are known (planned at release); before, the steps are named without numbers. */
  planned: boolean;
  steps: WaveStep[];
  /** End of the wait while in it (ISO), its label and the server-rendered countdown. */
  waitUntil: string | null;
  waitUntilLabel: string | null;
  waitCountdown: string | null;
  /** Shown from the seed wave on. */
  signals: SignalRow[] | null;
  /** The signal that halted the send, in words: "3 human replies at 22 November 2026, 14:05 UTC". */
  haltedBy: { kind: string; count: number; atLabel: string; text: string } | null;
}

export const SIGNAL_LABELS: Record<SignalKind, string> = {
  failure: "Permanent failures",
  bounce: "Bounces",
  reply: "Human replies",
  autoReply: "Auto-replies",
  report: "Problem reports",
};

const HALT_KIND_LABELS: Record<NonNullable<WaveProgress["haltedBy"]>["kind"], [string, string]> = {
  failure: ["permanent SMTP failure", "permanent SMTP failures"],
  bounce: ["bounce", "bounces"],
  reply: ["human reply", "human replies"],
  report: ["problem report", "problem reports"],
};

/**
 * While halted the current step reads "halted"; once sent every step is done; after a recall the
 * current step was stopped and later ones never started. `countdown` is view-model's (passed in
 * to keep one definition of it).
 */
export function wavesView(w: WaveProgress, now: number, standing: WavesStanding, countdown: (ms: number) => string): WavesView {
  const at = ORDER.indexOf(w.phase);
  const planned = at >= ORDER.indexOf("seed");
  const paused = standing.halted && standing.ended === null;
  const status = (key: WaveStep["key"]): StepStatus => {
    const i = ORDER.indexOf(key);
    if (standing.ended === "sent") return "done";
    if (i < at) return "done";
    if (standing.ended === "recalled") return i === at ? "stopped" : "skipped";
    if (i > at) return "upcoming";
    return paused ? "halted" : "current";
  };
  const started = (iso: string | null) => (iso ? ` · started ${formatDateTime(Date.parse(iso))}` : "");
  const size = (x: number) => (planned ? recipients(x) : "size set at release");
  const inWait = w.phase === "wait" && w.waitUntil !== null && standing.ended === null;
  const waitCountdown = inWait ? countdown(Date.parse(w.waitUntil!) - now) : null;
  const waitUntilLabel = inWait ? formatDateTime(Date.parse(w.waitUntil!)) : null;

  const step = (key: WaveStep["key"], label: string, detail: string, countdownAt: string | null = null): WaveStep => {
    const s = status(key);
    return { key, label, status: s, statusLabel: STEP_STATUS_LABELS[s], current: s === "current" || s === "halted", detail, countdownAt, countdown: countdownAt ? waitCountdown : null };
  };
  const waitDetail = inWait
    ? paused
      ? `was to end ${waitUntilLabel}; the rest starts only when someone continues the send`
      : `until ${waitUntilLabel}; the rest starts `
    : status("wait") === "done"
      ? "over"
      : "signals are watched before the rest starts";
  const steps = [
    step("seed", "Seed cohort", `${size(w.seed)}${w.seedAudience ? ` (the author, the approvers and audience ${w.seedAudience})` : ""}${started(w.startedAt.seed)}`),
    step("canary", "Canary", `${size(w.canary)}${started(w.startedAt.canary)}`),
    step("wait", "Wait", waitDetail, inWait && !paused ? w.waitUntil : null),
    step("rest", "The rest", `${size(w.rest)}${started(w.startedAt.rest)}`),
  ];

  return {
    phase: w.phase,
    phaseLabel:
      standing.ended === "sent"
        ? "every wave went out"
        : standing.ended === "recalled"
          ? `recalled during the ${WAVE_NAMES[w.phase]}`
          : paused && planned
            ? `halted during the ${WAVE_NAMES[w.phase]}`
            : PHASE_LABELS[w.phase],
    planned,
    steps,
    waitUntil: inWait ? w.waitUntil : null,
    waitUntilLabel,
    waitCountdown,
    signals: planned ? signalRows(w) : null,
    haltedBy: w.haltedBy && haltedByView(w.haltedBy),
  };
}

/**
 * Each signal against its threshold. Replies and reports halt at the threshold; bounces and failures
 * over their share of the early waves (seed cohort and canary: the base store/lua/fanout-prologue.lua
 * haltIfOver uses, fixed once planned, so one early bounce is not 100%).
 */
export function signalRows(w: WaveProgress): SignalRow[] {
  const s = w.signals;
  const t = w.thresholds;
  const halted = w.haltedBy?.kind;
  const share = (count: number, limit: number, kind: "bounce" | "failure"): SignalRow => {
    const early = w.seed + w.canary;
    const pct = early > 0 ? (count * 100) / early : 0;
    return {
      kind,
      label: SIGNAL_LABELS[kind],
      value: `${percentFormat.format(pct)}% / ${percentFormat.format(limit)}% (${n(count)} of ${n(early)})`,
      // Exact: count / early > limit / 100, without rounding the percentage first.
      reached: early > 0 && count > 0 && count * 100 > limit * early,
      halted: halted === kind,
    };
  };
  return [
    { kind: "reply", label: SIGNAL_LABELS.reply, value: `${n(s.replies)} / ${n(t.replies)}`, reached: s.replies >= t.replies, halted: halted === "reply" },
    { kind: "report", label: SIGNAL_LABELS.report, value: `${n(s.reports)} / ${n(t.reports)}`, reached: s.reports >= t.reports, halted: halted === "report" },
    share(s.bounces, t.bouncePercent, "bounce"),
    share(s.failures, t.failurePercent, "failure"),
    { kind: "autoReply", label: SIGNAL_LABELS.autoReply, value: `${n(s.autoReplies)} (not counted)`, reached: false, halted: false },
  ];
}

function haltedByView(h: NonNullable<WaveProgress["haltedBy"]>): NonNullable<WavesView["haltedBy"]> {
  const [one, many] = HALT_KIND_LABELS[h.kind];
  const atLabel = formatDateTime(Date.parse(h.at));
  return { kind: h.kind, count: h.count, atLabel, text: `${n(h.count)} ${h.count === 1 ? one : many} at ${atLabel}` };
}

export interface EvidenceView {
  kindLabel: string;
  iso: string;
  atLabel: string;
  /** Who: the reply's sender, the bounced or failed address, or the recipient's index. */
  who: string | null;
  excerpt: string | null;
  /** "5.1.1: user unknown" (DSN status or SMTP reply, and the diagnostic). */
  status: string | null;
}

const EVIDENCE_KIND_LABELS: Record<SignalKind, string> = { failure: "Permanent SMTP failure", bounce: "Bounce", reply: "Human reply", autoReply: "Automatic reply", report: "Problem report" };

/** One piece of evidence as the message page lists it (all text escaped by the template). */
export function evidenceView(e: SignalEvidence): EvidenceView {
  const ms = Date.parse(e.at);
  const status = [e.status, e.diagnostic].filter((x): x is string => typeof x === "string" && x !== "").join(": ");
  return {
    kindLabel: EVIDENCE_KIND_LABELS[e.kind] ?? e.kind,
    iso: Number.isFinite(ms) ? new Date(ms).toISOString() : e.at,
    atLabel: Number.isFinite(ms) ? formatDateTime(ms) : e.at,
    who: e.from ?? (e.index !== undefined ? `recipient no. ${n(e.index + 1)} of the audience` : null),
    excerpt: e.excerpt ?? null,
    status: status || null,
  };
}
