/**
 * What the dashboard shows about a message, decided here and only here (pure: no I/O, no HTTP).
 * The client script recomputes the ticking parts (countdown, rate) with the same rules; the
 * server renders the first frame so the page is right without JavaScript.
 */
import { PAUSABLE_STATES, RECALLABLE_STATES, type State } from "../../domain/lifecycle.js";
import { AIRLOCK_ACTOR, type ListedMessage } from "../../domain/message.js";
import { formatDateTime, STATE_LABELS } from "../../notify/format.js";
import { EARLY_PHASES, WAVE_NAMES, wavesView, type WavesView } from "./waves-view.js";

/** Below this, a scheduled release is "imminent": red, at the top, impossible to miss. */
export const IMMINENT_MS = 10 * 60_000;

/**
 * `live`: going out now; `imminent`: releases within IMMINENT_MS; `scheduled`: approved, later;
 * `waiting`: needs approvals; `done`: nothing more will go out.
 */
export type Urgency = "live" | "imminent" | "scheduled" | "waiting" | "done";

export interface Progress {
  total: number;
  sent: number;
  failed: number;
  skipped: number;
  done: number;
  /** Whole per cent of `total` settled, 0–100. */
  percent: number;
}

export interface CardView {
  id: string;
  subject: string;
  author: string;
  state: State;
  stateLabel: string;
  urgency: Urgency;
  /** The sentence in large type: "Going out in 2 minutes to 840,000 people". */
  headline: string;
  /**
   * The headline around its ticking countdown, before + "in 2 minutes" + after: for a scheduled
   * message (to its release), and for a staged send in the wait after its canary (to the rest).
   */
  countdownHeadline: { before: string; after: string } | null;
  /** What the headline counts down to (ISO): `releaseAt`, or the end of a staged send's wait. */
  countdownAt: string | null;
  /** The countdown as rendered by the server ("in 2 minutes 5 seconds"); the client ticks it. */
  headlineCountdown: string | null;
  /** Sort key of `pendingOrder`, for the client script to place a card that arrives live. */
  rank: number;
  audience: string;
  recipientCount: number;
  approvalsGiven: number;
  approvalsRequired: number;
  approvedBy: string[];
  releaseAt: string | null;
  releaseAtLabel: string | null;
  progress: Progress | null;
  /** Recipients per second since the fan-out started; null before it did. */
  rate: number | null;
  correction: { total: number; sent: number; failed: number; percent: number } | null;
  /** The recalled original's removal from the mailboxes (a purge connector is configured). */
  purge: { total: number; purged: number; notFound: number; failed: number; pending: number; done: number; percent: number; ended: boolean } | null;
  recallable: boolean;
  /** Held by ops, or halted by Airlock itself (`byAirlock`: what was about to go out was not what was approved): who, when, why. */
  paused: { by: string; byAirlock: boolean; atLabel: string; reason: string; haltReason: string } | null;
  /** The viewer may pause this fan-out now (ops/admin, running, not paused; a staged send is halted instead). */
  pausable: boolean;
  /** The viewer may resume it (ops/admin, paused; a staged send is continued instead). */
  resumable: boolean;
  /** A staged send (SPEC "Staged sends"): its waves, the signals so far; null when it goes all at once. */
  waves: WavesView | null;
  /** The viewer may halt this staged send now (ops/admin, sending, not halted). */
  haltable: boolean;
  /** The viewer may continue it: lift a halt, or start the rest before the wait ends (ops/admin, sending, halted or in an early wave). */
  continuable: boolean;
  possibleDuplicates: number;
  /** The message (or its correction text) waits for the viewer's approval: the review page's link. */
  review: { href: string; label: string } | null;
}

const numberFormat = new Intl.NumberFormat("en-US");
export const formatNumber = (n: number) => numberFormat.format(n);
const people = (n: number) => `${formatNumber(n)} ${n === 1 ? "person" : "people"}`;

/** `in 2 minutes 5 seconds`, `in 3 hours 10 minutes`, `now`. The client script mirrors this. */
export function countdown(ms: number): string {
  if (ms <= 0) return "now";
  const s = Math.ceil(ms / 1000);
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const u = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`;
  if (d > 0) return `in ${u(d, "day")}${h ? " " + u(h, "hour") : ""}`;
  if (h > 0) return `in ${u(h, "hour")}${m ? " " + u(m, "minute") : ""}`;
  if (m > 0) return `in ${u(m, "minute")}${sec ? " " + u(sec, "second") : ""}`;
  return `in ${u(sec, "second")}`;
}

export function audienceLabel(m: Pick<ListedMessage, "audience">): string {
  const parts = [...m.audience.lists];
  const n = m.audience.addresses.length;
  if (n > 0) parts.push(`${formatNumber(n)} ${n === 1 ? "address" : "addresses"}`);
  return parts.join(", ") || "nobody";
}

export function progressOf(m: ListedMessage): Progress {
  const total = m.recipientCount;
  const { sent, failed, skipped } = m.counts;
  const done = sent + failed + skipped;
  return { total, sent, failed, skipped, done, percent: total > 0 ? Math.min(100, Math.floor((done * 100) / total)) : 0 };
}

export function urgencyOf(m: ListedMessage, now: number): Urgency {
  switch (m.state) {
    case "sending":
    case "correcting":
      return "live";
    case "scheduled":
      return m.releaseAt !== null && Date.parse(m.releaseAt) - now <= IMMINENT_MS ? "imminent" : "scheduled";
    case "pending_approval":
      return "waiting";
    default:
      return "done";
  }
}

export function headline(m: ListedMessage, now: number): string {
  const to = people(m.recipientCount);
  switch (m.state) {
    case "pending_approval": {
      const missing = Math.max(0, m.requiredApprovals - m.approvals.length);
      return `Waiting for ${missing} more ${missing === 1 ? "approval" : "approvals"} · would go to ${to}`;
    }
    case "scheduled": {
      const at = m.releaseAt ? Date.parse(m.releaseAt) : now;
      return at - now <= 0 ? `Going out now to ${to}` : `Going out ${countdown(at - now)} to ${to}`;
    }
    case "sending": {
      const p = progressOf(m);
      if (m.waves) return stagedHeadline(m, m.waves, now).join("");
      if (m.paused) return `${halted(m) ? "Halted by Airlock" : "Paused"}: ${formatNumber(p.sent)} of ${to} have it, the rest wait`;
      return `Going out now: ${formatNumber(p.sent)} of ${to} so far`;
    }
    case "correcting":
      if (m.paused) return `Recalled after ${people(m.counts.sent)} received it: correction ${halted(m) ? "halted by Airlock" : "paused"}`;
      return `Recalled after ${people(m.counts.sent)} received it: correction going out`;
    case "sent":
      return `Sent to ${people(m.counts.sent)}${m.counts.failed ? `, ${formatNumber(m.counts.failed)} failed` : ""}`;
    case "recalled":
      return "Recalled before anyone received it";
    case "corrected":
      return `Recalled: ${people(m.counts.sent)} had received it, ${formatNumber(m.counts.corrected)} got the correction`;
    default:
      return `${capitalise(STATE_LABELS[m.state] ?? m.state)}: nothing was sent`;
  }
}

/**
 * A staged send going out, as [before, countdown, after] (the countdown only in the wait after the
 * canary, else ""): "Canary going out: 53 of 840,000 people so far".
 */
function stagedHeadline(m: ListedMessage, w: NonNullable<ListedMessage["waves"]>, now: number): [string, string, string] {
  const sent = formatNumber(m.counts.sent);
  const to = people(m.recipientCount);
  if (m.paused) return [`Halted${halted(m) ? " by Airlock" : ""} during the ${WAVE_NAMES[w.phase]}: ${sent} of ${to} have it, the rest wait`, "", ""];
  switch (w.phase) {
    case "approval":
    case "planning":
      return [`Planning the waves for ${to}`, "", ""];
    case "wait":
      if (w.waitUntil) return [`Waiting for signals: ${sent} of ${to} have it; the rest goes out `, countdown(Date.parse(w.waitUntil) - now), ""];
      return [`Waiting for signals: ${sent} of ${to} have it`, "", ""];
    case "rest":
      return [`Going out now to the rest: ${sent} of ${to} so far`, "", ""];
    default:
      return [`${capitalise(WAVE_NAMES[w.phase])} going out: ${sent} of ${to} so far`, "", ""];
  }
}

/** Airlock itself stopped the fan-out (not a person's pause). */
const halted = (m: ListedMessage) => m.paused?.by === AIRLOCK_ACTOR;

/** Recipients per second between release and `now`, from the settled counts. */
export function averageRate(m: ListedMessage, now: number): number | null {
  if (m.state !== "sending" || m.paused || !m.releaseAt) return null;
  const seconds = (now - Date.parse(m.releaseAt)) / 1000;
  if (seconds < 1) return null;
  return Math.round((m.counts.sent + m.counts.failed) / seconds);
}

/** `recallable`, `mayPause` and `awaiting` (what waits for the viewer's approval): MessageService decides. */
export function cardView(m: ListedMessage, now: number, recallable: boolean, mayPause = false, awaiting: "original" | "correction" | null = null): CardView {
  const running = PAUSABLE_STATES.includes(m.state);
  // A staged send that is going out is halted and continued, not paused and resumed (the same ops
  // pause underneath; Continue also starts the rest). Its correction after a recall pauses as any.
  const staged = m.waves !== null && m.state === "sending";
  const waitingForRest = staged && !m.paused && m.waves!.phase === "wait" && m.waves!.waitUntil !== null;
  const countdownAt = m.state === "scheduled" ? m.releaseAt : waitingForRest ? m.waves!.waitUntil : null;
  const correctionTotal = m.counts.sent;
  const correctionDone = m.counts.corrected + m.counts.correctionFailed;
  return {
    id: m.id,
    subject: m.subject,
    author: m.author,
    state: m.state,
    stateLabel: STATE_LABELS[m.state] ?? m.state,
    urgency: urgencyOf(m, now),
    headline: headline(m, now),
    countdownHeadline:
      m.state === "scheduled" && m.releaseAt
        ? { before: "Going out ", after: ` to ${people(m.recipientCount)}` }
        : waitingForRest
          ? (([before, , after]) => ({ before, after }))(stagedHeadline(m, m.waves!, now))
          : null,
    countdownAt,
    headlineCountdown: countdownAt ? countdown(Date.parse(countdownAt) - now) : m.releaseAt ? countdown(Date.parse(m.releaseAt) - now) : null,
    rank: RANK[urgencyOf(m, now)],
    audience: audienceLabel(m),
    recipientCount: m.recipientCount,
    approvalsGiven: m.approvals.length,
    approvalsRequired: m.requiredApprovals,
    approvedBy: m.approvals.map((a) => a.by),
    releaseAt: m.releaseAt,
    releaseAtLabel: m.releaseAt ? formatDateTime(Date.parse(m.releaseAt)) : null,
    progress: m.state === "pending_approval" || m.state === "scheduled" ? null : progressOf(m),
    rate: averageRate(m, now),
    correction:
      m.recall && m.state !== "recalled"
        ? { total: correctionTotal, sent: m.counts.corrected, failed: m.counts.correctionFailed, percent: correctionTotal > 0 ? Math.min(100, Math.floor((correctionDone * 100) / correctionTotal)) : 100 }
        : null,
    purge: m.purge && purgeView(m.purge),
    recallable: recallable && RECALLABLE_STATES.includes(m.state),
    paused: m.paused && { by: m.paused.by, byAirlock: m.paused.by === AIRLOCK_ACTOR, atLabel: formatDateTime(Date.parse(m.paused.at)), reason: m.paused.reason, haltReason: haltReason(m.paused.reason) },
    pausable: mayPause && running && !staged && !m.paused,
    resumable: mayPause && running && !staged && m.paused !== null,
    waves: m.waves && wavesView(m.waves, now, { halted: m.paused !== null, ended: m.state === "sent" ? "sent" : m.recall ? "recalled" : null }, countdown),
    haltable: mayPause && staged && !m.paused,
    continuable: mayPause && staged && (m.paused !== null || EARLY_PHASES.includes(m.waves!.phase)),
    possibleDuplicates: m.possibleDuplicates,
    review: awaiting === null ? null : { href: reviewPath(m.id, awaiting), label: awaiting === "original" ? "Review and approve…" : "Review the correction text…" },
  };
}

/** A halt's reason after "Halted: " (MessageService.halt records a person's as "halted: <their words>"). */
export function haltReason(reason: string): string {
  return reason.replace(/^halted: /i, "");
}

/** Purge progress as the card and the message page show it. */
export function purgeView(p: NonNullable<ListedMessage["purge"]>): NonNullable<CardView["purge"]> {
  const done = p.purged + p.notFound + p.failed;
  return { total: p.total, purged: p.purged, notFound: p.notFound, failed: p.failed, pending: p.pending, done, percent: p.total > 0 ? Math.min(100, Math.floor((done * 100) / p.total)) : 100, ended: p.endedAt !== null };
}

/** The review page of a message, or of its custom correction text. */
export function reviewPath(id: string, of: "original" | "correction" = "original"): string {
  return `/messages/${id}/review${of === "correction" ? "?of=correction" : ""}`;
}

const RANK: Record<Urgency, number> = { live: 0, imminent: 1, scheduled: 1, waiting: 3, done: 4 };

/** Most urgent first: going out now, then by release time, then waiting for approval (oldest first). */
export function pendingOrder(a: CardView, b: CardView): number {
  if (a.rank !== b.rank) return a.rank - b.rank;
  if (a.releaseAt && b.releaseAt) return Date.parse(a.releaseAt) - Date.parse(b.releaseAt);
  return Number(a.id) - Number(b.id);
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
