/**
 * Signals of a staged send (issue 16): what the first waves' recipients show. Permanent SMTP
 * failures are counted by the fan-out's settle itself (store/lua/settle.lua); bounces and human
 * replies come from the inbound listener (src/inbound/), reports from the footer link
 * (src/http/routes/report.ts). Each is recorded by MessageStore.signal (store/lua/waves.lua), which
 * halts the send when a count crosses its threshold while a wave before the rest is going or waiting.
 */

export const SIGNAL_KINDS = ["failure", "bounce", "reply", "autoReply", "report"] as const;
export type SignalKind = (typeof SIGNAL_KINDS)[number];

/** What is kept of one signal for the evidence (bounded: see MAX_EVIDENCE). All text already cut to size. */
export interface SignalEvidence {
  kind: SignalKind;
  /** ISO time it was recorded. */
  at: string;
  /** The recipient's index in the frozen audience (bounces: from the VERP address; failures). */
  index?: number;
  /** Who: the reply's From, the bounced recipient, the failed address. */
  from?: string;
  /** The reply's first lines, the reporter's note. */
  excerpt?: string;
  /** DSN status (5.1.1) or SMTP reply. */
  status?: string;
  diagnostic?: string;
}

/** Evidence entries kept per message (newest first): the dashboard and the halt mail show them. */
export const MAX_EVIDENCE = 50;

/** Thresholds, from the settings (config.ts SIGNAL_*). A count over one halts the send. */
export interface SignalThresholds {
  /** Human replies that halt: at least this many. */
  replies: number;
  /** "Report a problem" clicks that halt: at least this many. */
  reports: number;
  /** Bounces over this percentage of the early waves' recipients (seed cohort and canary, as planned). */
  bouncePercent: number;
  /** Permanent SMTP failures over this percentage of the early waves' recipients (seed cohort and canary). */
  failurePercent: number;
}

/** What records a signal from outside the fan-out (inbound listener, report link). */
export interface SignalSink {
  /**
   * Records one signal of message `id`. `dedupe`: the same key twice counts once (a re-delivered
   * DSN, a reply's Message-ID, a reporter's cookie). Answers whether it counted and whether it
   * halted the send; `unknown` for a message that does not exist or was never sent.
   */
  record(id: string, kind: Exclude<SignalKind, "failure">, evidence: Omit<SignalEvidence, "kind" | "at">, dedupe: string): Promise<SignalAnswer>;
}

export type SignalAnswer = { ok: true; counted: boolean; halted: boolean } | { ok: false; err: "not_found" | "not_sent" };
