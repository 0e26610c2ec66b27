/** The MessageSummary that notifications and link pages show, from a message and its revision snapshot. */
import type { UserDirectory } from "../auth/users.js";
import type { Message } from "../domain/message.js";
import type { MessageStore } from "../store/message-store.js";
import type { MessageSummary } from "./notification-data.js";
import { resolutionLine } from "./resolution.js";

export function dashboardUrl(publicUrl: string, id: string): string {
  return `${publicUrl}/messages/${encodeURIComponent(id)}`;
}

/** The dashboard's review page of the message, or of its custom correction text (sign-in first, then Approve / Reject there). */
export function reviewUrl(publicUrl: string, id: string, of: "original" | "correction" = "original"): string {
  return `${dashboardUrl(publicUrl, id)}/review${of === "correction" ? "?of=correction" : ""}`;
}

/** Each named audience with its size frozen at submission (from the revision snapshot), and the explicit addresses' count. */
export async function frozenAudiences(store: MessageStore, m: Message): Promise<{ audiences: MessageSummary["audiences"]; explicitCount: number }> {
  const snap = (await store.revisionSnapshot(m.id, m.revision)) ?? {};
  // Lua's cjson writes an empty list as {}: anything but an array means "no lists".
  const counts = Array.isArray(snap.audienceCounts) ? (snap.audienceCounts as Array<{ name: string; count: number; directory?: unknown }>) : [];
  return {
    audiences: counts.length
      ? counts.map((c) => ({ name: String(c.name), count: Number(c.count), resolution: resolutionLine(c.directory, Number(c.count)) }))
      : m.audience.lists.map((name) => ({ name, count: 0, resolution: null })),
    explicitCount: typeof snap.explicitCount === "number" ? snap.explicitCount : m.audience.addresses.length,
  };
}

export async function messageSummary(d: { store: MessageStore; users: UserDirectory; publicUrl: string }, m: Message): Promise<MessageSummary> {
  const frozen = await frozenAudiences(d.store, m);
  return {
    id: m.id,
    revision: m.revision,
    subject: m.subject,
    from: m.from,
    author: m.author,
    authorName: d.users.byAddress(m.author)?.name ?? m.author,
    recipientCount: m.recipientCount,
    audiences: frozen.audiences,
    explicitCount: frozen.explicitCount,
    text: m.text,
    html: m.html,
    dashboardUrl: dashboardUrl(d.publicUrl, m.id),
    staged: m.waves ? { seedAudience: m.waves.seedAudience } : null,
  };
}
