/**
 * A directory audience's resolution as the approval request and the review page say it:
 * "resolved from <group> at <time>: N recipients (+a, −r since the last resolution)". Read from the
 * revision snapshot, which submit.lua writes from the catalogue entry of the version it froze.
 */
import { formatDateTime } from "./format.js";

/** A frozen resolution as submit.lua records it in `audienceCounts[i].directory`. */
interface FrozenResolution {
  group?: unknown;
  resolvedAt?: unknown;
  first?: unknown;
  added?: unknown;
  removed?: unknown;
  disabled?: unknown;
  withoutMail?: unknown;
  confirmedBy?: unknown;
}

const count = (n: number, word: string) => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;

/** The sentence for one frozen audience entry, or null when it is not a directory resolution. */
export function resolutionLine(directory: unknown, recipients: number): string | null {
  if (typeof directory !== "object" || directory === null) return null;
  const d = directory as FrozenResolution;
  if (typeof d.group !== "string" || typeof d.resolvedAt !== "string") return null;
  const at = Date.parse(d.resolvedAt);
  const when = Number.isNaN(at) ? d.resolvedAt : formatDateTime(at);
  const since = d.first === true ? "first resolution" : `+${Number(d.added) || 0}, −${Number(d.removed) || 0} since the last resolution`;
  const left: string[] = [];
  if (Number(d.withoutMail) > 0) left.push(`${count(Number(d.withoutMail), "member")} without mail`);
  if (Number(d.disabled) > 0) left.push(`${count(Number(d.disabled), "disabled account")}`);
  const out = left.length ? `; not included: ${left.join(", ")}` : "";
  const confirmed = typeof d.confirmedBy === "string" ? `; change confirmed by ${d.confirmedBy}` : "";
  return `resolved from ${d.group} at ${when}: ${count(recipients, "recipient")} (${since})${out}${confirmed}`;
}
