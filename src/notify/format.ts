/**
 * Dates and durations as people read them in notifications and pages. Always UTC, said so
 * explicitly: a company-wide message is read in every office, and "14:05" alone would mislead.
 */
import type { State } from "../domain/lifecycle.js";
const MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];

const two = (n: number) => String(n).padStart(2, "0");

/** `14:05 UTC` */
export function formatTime(ms: number): string {
  const d = new Date(ms);
  return `${two(d.getUTCHours())}:${two(d.getUTCMinutes())} UTC`;
}

/** `22 November 2026, 14:05 UTC` */
export function formatDateTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()}, ${formatTime(ms)}`;
}

const unit = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** `15 minutes`, `1 hour 30 minutes`, `2 days 3 hours`, `45 seconds`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return unit(s, "second");
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const parts = [days && unit(days, "day"), hours && unit(hours, "hour"), !days && minutes && unit(minutes, "minute")].filter(Boolean);
  return parts.join(" ") || unit(0, "minute");
}

/** Human wording of a state, for pages. */
export const STATE_LABELS: Record<State, string> = {
  draft: "a draft, not submitted",
  pending_approval: "waiting for approval",
  scheduled: "approved, waiting for its release time",
  sending: "going out now",
  sent: "sent",
  recalled: "recalled before anyone received it",
  correcting: "recalled; the correction is going out (or waiting for its text's approval)",
  corrected: "recalled and corrected",
  rejected: "rejected",
  withdrawn: "withdrawn by its author",
  expired: "expired without approval",
};
