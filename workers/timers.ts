/**
 * Jobs on the clock. Each re-checks the message's state and time itself (in the store's
 * compare-and-set), so an early, late, duplicated or replayed job does no harm; the sweep re-drives
 * anything whose job was lost between a commit and its enqueue.
 */
import type { Logger } from "pino";
import type { Clock } from "../src/domain/clock.js";
import { allowedFrom, FANOUT_STATES } from "../src/domain/lifecycle.js";
import type { JobData } from "../src/queues/catalogue.js";
import type { FollowUps } from "../src/service/follow-ups.js";
import type { MessageStore, SweepReads } from "../src/store/message-store.js";
import type { WavePlanner } from "./wave-planner.js";
import type { WavePhase } from "../src/domain/message.js";
import type { FollowUp } from "../src/store/script-answers.js";

export interface TimerDeps {
  store: MessageStore;
  reads: SweepReads;
  followUps: FollowUps;
  clock: Clock;
  logger: Logger;
  /** Makes a released staged send's plan of waves. */
  planner?: WavePlanner | null;
  /** PURGE_NOT_FOUND_RETRY_EVERY_SECONDS in ms, or null without a purge connector (running purges are then left to a worker that has one). */
  purgeRetryEveryMs?: number | null;
}

/** A staged send's waves opened in each phase (its batch jobs are per wave). */
const OPENED: Record<WavePhase, number> = { approval: 0, planning: 0, seed: 1, canary: 2, wait: 2, rest: 3 };

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
    if (a.ok) this.d.logger.info({ message: id, revision }, `message ${id} scheduled -> ${a.state} (${a.recipientCount} recipients)`);
    // Released: its fan-out starts. Fired early (the queue's clock differs from ours): the refusal
    // names a release at the stored releaseAt. Any other refusal (recalled, withdrawn, newer
    // revision) names nothing: there is nothing to release.
    await this.d.followUps.carryOut(id, a.followUps);
  }

  async planWaves(job: JobData<"planWaves">): Promise<void> {
    if (!this.d.planner) throw new Error(`message ${job.id} is a staged send, but this worker has no wave planner`);
    await this.d.planner.plan(job.id);
  }

  /** The end of a staged send's wait: the rest goes, unless it was halted (ops continue it then). */
  async nextWave(job: JobData<"nextWave">): Promise<void> {
    const a = await this.d.store.wavesRest(job.id, "scheduler", "timer");
    if (a.ok) this.d.logger.info({ message: job.id }, `message ${job.id}: the wait after the canary is over, the rest goes`);
    else if (a.err === "halted") this.d.logger.info({ message: job.id }, `message ${job.id}: the wait is over but the send is halted: ops continue it or someone recalls it`);
    // Fired early (clock skew): the refusal names the timer again at the stored time.
    await this.d.followUps.carryOut(job.id, a.followUps);
  }

  async expire(job: JobData<"expire">): Promise<void> {
    const a = await this.d.store.move("expire", job.id, "scheduler", { revision: job.revision });
    if (a.ok) this.d.logger.info({ message: job.id, revision: job.revision }, `message ${job.id} expired`);
  }

  async sweep(): Promise<void> {
    const now = this.d.clock.now();
    for (const id of await this.d.reads.idsInStates(allowedFrom("release"))) {
      const m = await this.d.store.get(id);
      if (m?.releaseAt && Date.parse(m.releaseAt) <= now) await this.release({ id, revision: m.revision });
    }
    for (const id of await this.d.reads.idsInStates(allowedFrom("expire"))) {
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
    for (const state of FANOUT_STATES) {
      for (const id of await this.d.reads.idsInStates([state])) {
        const { lastActivity, correctionStarted } = await this.d.reads.activity(id);
        if (now - lastActivity < STALE_FANOUT_MS) continue;
        const m = await this.d.store.get(id);
        // Held by ops: no progress is expected; its jobs wait in the delayed set. A custom correction
        // awaiting approval: nothing is due until someone decides (correction.lua starts it then).
        if (!m || m.paused || (m.correction?.status === "pending" && !correctionStarted)) continue;
        // A staged send: its plan (a lost job), the wait after its canary (its timer re-checked: a lost
        // one is added again, one that fired early waits again), and every opened wave's own jobs
        // (each job takes its own wave's recipients only: store/lua/claim.lua).
        const waves = m.waves;
        if (state === "sending" && waves?.phase === "planning") {
          await this.d.followUps.carryOut(id, [{ do: "planWaves", recipients: m.recipientCount }]);
          continue;
        }
        if (state === "sending" && waves?.phase === "wait") {
          if (waves.waitUntil && Date.parse(waves.waitUntil) <= now) await this.nextWave({ id });
          else if (waves.waitUntil) await this.d.followUps.carryOut(id, [{ do: "scheduleWave", at: Date.parse(waves.waitUntil) }]);
          // Waiting is no standstill, unless early recipients are still to go (a continue opened the
          // canary before the seed cohort was done, and a job of it was lost).
          if (m.counts.queued <= waves.rest) continue;
        }
        const opened = waves ? OPENED[waves.phase] : null;
        const originals: FollowUp[] =
          opened === null
            ? [{ do: "startFanout", kind: "original", recipients: m.recipientCount }]
            : Array.from({ length: opened }, (_, i) => ({ do: "startFanout", kind: "original", recipients: m.recipientCount, wave: i + 1 }) as const);
        this.d.logger.warn({ message: id, revision: m.revision }, `message ${id} ${state}: no progress for ${now - lastActivity} ms, re-driving its batches`);
        // What a crash between a commit and its follow-up could have lost: the same follow-ups again
        // (batch job ids are deterministic, so live jobs are not duplicated).
        await this.d.followUps.carryOut(id, [
          ...originals,
          ...(correctionStarted ? [{ do: "startFanout" as const, kind: "correction" as const, recipients: m.recipientCount }] : []),
        ]);
      }
    }
    if (this.d.purgeRetryEveryMs != null) await this.sweepPurges(now, this.d.purgeRetryEveryMs);
  }

  /**
   * A running purge with no activity for longer than two retry intervals (and at least
   * STALE_FANOUT_MS) lost a job (a crash between a pass and the enqueue of the next): a new pass over
   * every range takes again whoever is not done. Its job ids name the last activity and how long the
   * standstill has lasted in tens of thresholds: one pass per ten thresholds of standstill, however
   * many sweeps see it (a purge only waiting its turn behind another message's is not flooded with
   * passes), and a pass that failed for good (BullMQ keeps it, so its id adds nothing) is followed
   * by another.
   */
  private async sweepPurges(now: number, retryEveryMs: number): Promise<void> {
    const threshold = Math.max(STALE_FANOUT_MS, 2 * retryEveryMs);
    for (const { id, activityAt, recipients } of await this.d.reads.runningPurges()) {
      if (now - activityAt < threshold) continue;
      this.d.logger.warn({ message: id }, `message ${id}: purge without progress for ${now - activityAt} ms, re-driving it`);
      await this.d.followUps.carryOut(id, [{ do: "startPurge", recipients, pass: `sweep${activityAt}x${Math.floor((now - activityAt) / (10 * threshold))}` }]);
    }
  }
}
