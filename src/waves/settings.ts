/** The staged-send settings (config.ts WAVES_THRESHOLD, CANARY_*, SIGNAL_*), resolved. */
import type { Config } from "../config.js";
import type { SignalThresholds } from "./signals.js";

/**
 * The largest seed audience: its members (those among the recipients) go first with the author and
 * the approvers, before the canary — a few dozen people who look at the message, not a wave of its
 * own. Checked at submit; the planner takes no more than this of it either (read at release).
 */
export const MAX_SEED_AUDIENCE = 100;

export interface WaveSettings {
  /** Audience size from which a send is staged by default (0: only when its author asks). */
  from: number;
  canaryPercent: number;
  canaryMinimum: number;
  waitMs: number;
  thresholds: SignalThresholds;
}

export type WaveConfig = Pick<
  Config,
  | "WAVES_THRESHOLD"
  | "LARGE_AUDIENCE_THRESHOLD"
  | "CANARY_PERCENT"
  | "CANARY_MIN_RECIPIENTS"
  | "CANARY_WAIT_MINUTES"
  | "SIGNAL_REPLIES"
  | "SIGNAL_REPORTS"
  | "SIGNAL_BOUNCE_PERCENT"
  | "SIGNAL_FAILURE_PERCENT"
>;

export function waveSettings(c: WaveConfig): WaveSettings {
  return {
    from: c.WAVES_THRESHOLD ?? c.LARGE_AUDIENCE_THRESHOLD,
    canaryPercent: c.CANARY_PERCENT,
    canaryMinimum: c.CANARY_MIN_RECIPIENTS,
    waitMs: Math.round(c.CANARY_WAIT_MINUTES * 60_000),
    thresholds: { replies: c.SIGNAL_REPLIES, reports: c.SIGNAL_REPORTS, bouncePercent: c.SIGNAL_BOUNCE_PERCENT, failurePercent: c.SIGNAL_FAILURE_PERCENT },
  };
}
