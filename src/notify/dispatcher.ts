/**
 * Turns the audit trail into notifications. Every state change already appends an entry to the
 * global audit stream in the same atomic step as the change itself, so the stream is a reliable
 * outbox: a consumer group reads it, `planNotifications` decides who hears about each entry, one
 * notify job per person is enqueued (ids derived from the entry: re-handling enqueues nothing
 * twice), and only then is the entry acknowledged. A crash between the commit of a state change
 * and its notification loses nothing; it only delays it.
 */
import { flatFields } from "../audit/chain.js";
import { sameIdentity } from "../domain/policies.js";
import { isAllowedDomain } from "../domain/recipient-domains.js";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { UserDirectory } from "../auth/users.js";
import type { Clock } from "../domain/clock.js";
import { AIRLOCK_ACTOR, type Message } from "../domain/message.js";
import type { JobData } from "../queues/catalogue.js";
import { keys } from "../store/keys.js";
import type { MessageStore } from "../store/message-store.js";
import type { NotificationKind } from "./notification-data.js";

export const NOTIFIER_GROUP = "notifier";

export interface AuditEntry {
  message: string;
  revision: string;
  actor: string;
  action: string;
  from: string;
  to: string;
  /** JSON written by the script (for example the recall's `correction` status, the pause's `reason`). */
  detail?: string;
}

/** Who may be told: every user with the approver role, and every user with the ops role. */
export interface People {
  approvers: readonly string[];
  ops: readonly string[];
  /** ALLOWED_RECIPIENT_DOMAINS (promise 8): notifications carry the message, so nobody outside them gets one. */
  allowedDomains?: readonly string[];
}

function detailOf(e: AuditEntry): Record<string, unknown> {
  try {
    const d: unknown = JSON.parse(e.detail ?? "");
    return d && typeof d === "object" ? (d as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** Pure: who is told what about one audit entry (one entry may need more than one kind). */
export function planNotifications(e: AuditEntry, m: Message, people: People): Array<{ kind: NotificationKind; to: string }> {
  const approvedBy = m.approvals.map((a) => a.by);
  const approversButAuthor = people.approvers.filter((a) => !sameIdentity(a, m.author));
  const involved = (...extra: string[]) => [m.author, ...approvedBy, ...extra];
  const plan: Array<[NotificationKind, string[]]> = [];
  switch (e.action) {
    case "submit":
    case "edit":
      plan.push(["approval_request", approversButAuthor]);
      break;
    case "remind":
      // Approvals of this revision only (an edit clears them); those who approved need no reminder.
      if (String(m.revision) === e.revision) plan.push(["reminder", approversButAuthor.filter((a) => !approvedBy.includes(a))]);
      break;
    case "approve":
      if (e.to === "scheduled") plan.push(["scheduled", involved()]);
      break;
    case "reject":
      plan.push(["rejected", [m.author]]);
      break;
    case "recall":
      plan.push(["recalled", involved(e.actor)]);
      // A custom correction text waits for someone other than the person who recalled (and wrote it).
      if (detailOf(e).correction === "pending") plan.push(["correction_request", people.approvers.filter((a) => !sameIdentity(a, e.actor))]);
      break;
    case "finishCorrection":
      plan.push(["corrected", involved(m.recall?.by ?? "")]);
      break;
    case "expire":
      plan.push(["expired", [m.author]]);
      break;
    case "pause":
      // Airlock halted the fan-out itself (not a person's pause, which mails nobody).
      if (e.actor === AIRLOCK_ACTOR) plan.push(["halted", [...people.ops, ...involved(...(m.correction?.approvals.map((a) => a.by) ?? []))]]);
      break;
  }
  return plan.flatMap(([kind, to]) =>
    [...new Set(to.map((a) => a.toLowerCase()))].filter((a) => a.includes("@") && isAllowedDomain(a, people.allowedDomains)).map((address) => ({ kind, to: address })),
  );
}

export interface NotificationQueue {
  notify(jobs: Array<JobData<"notify">>): Promise<void>;
}

export interface DispatcherDeps {
  /** A connection of its own: XREADGROUP blocks it. */
  redis: Redis;
  store: MessageStore;
  users: UserDirectory;
  queue: NotificationQueue;
  logger: Logger;
  /** Paces the takeover of orphaned entries. */
  clock: Clock;
  /** Unique per process. */
  consumer: string;
  /** ALLOWED_RECIPIENT_DOMAINS, when set. */
  allowedDomains?: readonly string[];
}

/** How long a blocking read waits before the loop checks whether it should stop. */
const BLOCK_MS = 1000;
/** Entries another consumer read but did not acknowledge for this long are taken over (it died). */
const ORPHAN_IDLE_MS = 60_000;
/** After a Redis error, wait this long before reading again (Redis restarting, failing over). */
const RETRY_MS = 1000;
/** An entry whose handling fails this often (corrupt data, a bug) is logged and skipped, so it cannot hold up the rest. */
const MAX_ENTRY_FAILURES = 5;
/** How long stop() waits for the loop when Redis does not answer (the read would otherwise wait for Redis forever). */
const STOP_WAIT_MS = 3000;

/**
 * Every process creates the group at start, before it can write an audit entry. On a new
 * deployment the stream is empty and the group starts at its beginning, so nothing is missed even
 * if an API process writes before any worker runs. On a deployment that had no notifications yet,
 * the group starts at the end: history is not mailed again.
 */
export async function ensureNotifierGroup(redis: Redis): Promise<void> {
  const existing = await redis.xlen(keys.auditAll());
  try {
    await redis.xgroup("CREATE", keys.auditAll(), NOTIFIER_GROUP, existing > 0 ? "$" : "0", "MKSTREAM");
  } catch (e) {
    if (!String((e as Error).message).includes("BUSYGROUP")) throw e;
  }
}

type StreamEntries = Array<[string, string[]]>;

export class NotificationDispatcher {
  private stopped = false;
  private running: Promise<void> | null = null;
  private readonly failures = new Map<string, number>();

  constructor(private readonly d: DispatcherDeps) {}

  start(): void {
    this.running ??= this.loop();
  }

  /** Ends the blocking read by closing its connection (the dispatcher's own); an entry in hand is finished first. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.d.redis.disconnect();
    await Promise.race([this.running, new Promise((r) => setTimeout(r, STOP_WAIT_MS).unref())]);
    this.running = null;
  }

  private async loop(): Promise<void> {
    const { redis, logger, clock } = this.d;
    let lastOrphanCheck = -Infinity;
    // "0" first: our own entries read before a restart but never acknowledged.
    let from = "0";
    while (!this.stopped) {
      try {
        const now = clock.now();
        if (now - lastOrphanCheck > ORPHAN_IDLE_MS / 2) {
          lastOrphanCheck = now;
          const [, claimed] = (await redis.xautoclaim(keys.auditAll(), NOTIFIER_GROUP, this.d.consumer, ORPHAN_IDLE_MS, "0-0", "COUNT", 100)) as [string, StreamEntries];
          await this.handleAll(claimed);
        }
        const res = (await redis.xreadgroup("GROUP", NOTIFIER_GROUP, this.d.consumer, "COUNT", 100, "BLOCK", BLOCK_MS, "STREAMS", keys.auditAll(), from)) as Array<[string, StreamEntries]> | null;
        const entries = res?.[0]?.[1] ?? [];
        if (from === "0" && entries.length === 0) from = ">";
        await this.handleAll(entries);
      } catch (e) {
        if (this.stopped) break;
        from = "0"; // entries read but not acknowledged before the error are ours to redo
        if (String((e as Error).message).includes("NOGROUP")) await ensureNotifierGroup(redis).catch(() => {}); // Redis lost its data
        logger.warn(`notification dispatcher: ${(e as Error).message}; retrying in ${RETRY_MS} ms`);
        await new Promise((r) => setTimeout(r, RETRY_MS));
      }
    }
  }

  private async handleAll(entries: StreamEntries): Promise<void> {
    for (const [entryId, flat] of entries) {
      if (flat) {
        const f = flatFields(flat);
        try {
          await this.handle(entryId, f as unknown as AuditEntry);
        } catch (e) {
          const n = (this.failures.get(entryId) ?? 0) + 1;
          this.failures.set(entryId, n);
          if (n < MAX_ENTRY_FAILURES) throw e; // not acknowledged: read again after the retry pause
          this.d.logger.error({ message: f.message }, `audit entry ${entryId} (${f.action}) skipped after ${n} failed attempts: ${(e as Error).message}`);
        }
        this.failures.delete(entryId);
      }
      // Also for an entry deleted from the stream meanwhile (nil fields): nothing to do, and left
      // unacknowledged it would be read again forever.
      await this.d.redis.xack(keys.auditAll(), NOTIFIER_GROUP, entryId);
    }
  }

  private async handle(entryId: string, e: AuditEntry): Promise<void> {
    if (!e.message) return;
    const m = await this.d.store.get(e.message);
    if (!m) return;
    const emails = (role: "approver" | "ops") => this.d.users.withRole(role).map((u) => u.email);
    const planned = planNotifications(e, m, { approvers: emails("approver"), ops: emails("ops"), allowedDomains: this.d.allowedDomains });
    if (planned.length === 0) return;
    await this.d.queue.notify(planned.map((p) => ({ ...p, id: m.id, revision: Number(e.revision), entry: entryId })));
    const kinds = [...new Set(planned.map((p) => p.kind))].join(", ");
    this.d.logger.info({ message: m.id, revision: Number(e.revision) }, `${e.action}: ${planned.length} notification(s) queued (${kinds})`);
  }
}
