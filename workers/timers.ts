/**
 * Jobs on the clock. Each re-checks the message's state and time itself (in the store's
 * compare-and-set), so an early, late, duplicated or replayed job does no harm; the sweep re-drives
 * anything whose job was lost between a commit and its enqueue.
 */
import type { Logger } from "pino";
import type { JobData } from "../src/queues/catalogue.js";
import type { Scheduler } from "../src/queues/scheduler.js";
import type { Clock, MessageStore, SweepReads } from "../src/store/message-store.js";

export interface TimerDeps {
  store: MessageStore;
  reads: SweepReads;
  scheduler: Scheduler;
  clock: Clock;
  logger: Logger;
}

/** A fan-out with no progress for this long gets its batch jobs re-added (ids dedupe the live ones). */
const STALE_FANOUT_MS = 30_000;

/** Approvers who have not acted are reminded at half the approval time-to-live. */
export function reminderDue(submittedAt: number, expiresAt: number): number {
  return submittedAt + (expiresAt - submittedAt) / 2;
}

export class TimerProcessor {
  constructor(private readonly d: TimerDeps) {}

  async release(job: JobData<"release">): Promise<void> {
    const { id, revision } = job;
    const a = await this.d.store.move("release", id, "scheduler", { revision });
    if (a.ok) {
      this.d.logger.info({ message: id, revision }, `message ${id} scheduled -> sending (${a.recipientCount} recipients)`);
      await this.d.scheduler.startFanout(id, "original", Number(a.recipientCount));
    } else if (a.err === "not_due") {
      // Fired early (the queue's clock differs from ours): wait again for the stored releaseAt.
      const m = await this.d.store.get(id);
      if (m?.releaseAt) await this.d.scheduler.scheduleRelease(id, revision, Date.parse(m.releaseAt));
    }
    // Any other answer (recalled, withdrawn, newer revision) means: nothing to release.
  }

  async expire(job: JobData<"expire">): Promise<void> {
    const a = await this.d.store.move("expire", job.id, "scheduler", { revision: job.revision });
    if (a.ok) this.d.logger.info({ message: job.id, revision: job.revision }, `message ${job.id} pending_approval -> expired`);
  }

  async sweep(): Promise<void> {
    const now = this.d.clock.now();
    for (const id of await this.d.reads.idsInState("scheduled")) {
      const m = await this.d.store.get(id);
      if (m?.releaseAt && Date.parse(m.releaseAt) <= now) await this.release({ id, revision: m.revision });
    }
    for (const id of await this.d.reads.idsInState("pending_approval")) {
      const m = await this.d.store.get(id);
      if (!m?.expiresAt) continue;
      const expiresAt = Date.parse(m.expiresAt);
      if (expiresAt <= now) await this.expire({ id, revision: m.revision });
      else if (now >= reminderDue(Date.parse(m.submittedAt), expiresAt)) {
        // Recorded once per revision; the notification dispatcher reminds whoever has not acted.
        const a = await this.d.store.note(id, "scheduler", "remind", { revision: m.revision, given: m.approvals.length, required: m.requiredApprovals }, { once: `reminded:${m.revision}`, revision: m.revision });
        if (a.ok) this.d.logger.info({ message: id, revision: m.revision }, `message ${id}: approval reminder due`);
      }
    }
    for (const state of ["sending", "correcting"] as const) {
      for (const id of await this.d.reads.idsInState(state)) {
        const { lastActivity, correctionStarted } = await this.d.reads.activity(id);
        if (now - lastActivity < STALE_FANOUT_MS) continue;
        const m = await this.d.store.get(id);
        // Held by ops: no progress is expected; its jobs wait in the delayed set.
        if (!m || m.paused) continue;
        this.d.logger.warn({ message: id, revision: m.revision }, `message ${id} ${state}: no progress for ${now - lastActivity} ms, re-driving its batches`);
        await this.d.scheduler.startFanout(id, "original", m.recipientCount);
        if (correctionStarted) await this.d.scheduler.startFanout(id, "correction", m.recipientCount);
      }
    }
  }
}
