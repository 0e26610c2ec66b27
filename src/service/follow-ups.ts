/**
 * Carries out what a committed state change names as its follow-ups (store/script-answers.ts):
 * schedule a release or an expiry, start or wake a fan-out. The one place that enqueues after a
 * change, called by the service, the fan-out processor and the timers alike. Every follow-up is
 * idempotent (deterministic job ids, state re-checked by the job), so carrying one out twice, or
 * the sweep re-driving one a crash lost between the commit and here, does no harm.
 */
import type { Logger } from "pino";
import type { Metrics } from "../metrics/metrics.js";
import type { Scheduler } from "../queues/scheduler.js";
import type { FollowUp } from "../store/script-answers.js";

export interface FollowUpDeps {
  scheduler: Scheduler;
  logger?: Pick<Logger, "info">;
  /** The recall-to-stop time is observed when a recall's correction starts. */
  metrics?: Pick<Metrics, "recallToStop">;
}

export class FollowUps {
  constructor(private readonly d: FollowUpDeps) {}

  async carryOut(id: string, list: readonly FollowUp[] | undefined): Promise<void> {
    for (const f of list ?? []) await this.one(id, f);
  }

  private async one(id: string, f: FollowUp): Promise<void> {
    switch (f.do) {
      case "scheduleRelease":
        return this.d.scheduler.scheduleRelease(id, f.revision, f.at);
      case "scheduleExpiry":
        return this.d.scheduler.scheduleExpiry(id, f.revision, f.at);
      case "startFanout":
        if (f.kind === "correction") {
          // The original's fan-out has stopped: by the recall itself (0) or by its last transaction's settle.
          if (f.sinceRecallMs !== undefined) this.d.metrics?.recallToStop.observe(f.sinceRecallMs / 1000);
          this.d.logger?.info({ message: id, revision: f.revision }, `message ${id} correcting: correction fan-out started`);
        }
        if (f.wave !== undefined) this.d.logger?.info({ message: id }, `message ${id}: wave ${["", "seed cohort", "canary", "rest"][f.wave]} started`);
        return this.d.scheduler.startFanout(id, f.kind, f.recipients, f.wave);
      case "wakeFanout":
        return this.d.scheduler.wakeFanout(id, f.kind, f.recipients, f.wave);
      case "planWaves":
        return this.d.scheduler.planWaves(id);
      case "scheduleWave":
        return this.d.scheduler.scheduleWave(id, f.at);
      case "startPurge":
        if (!f.pass) this.d.logger?.info({ message: id }, `message ${id}: purge from the recipients' mailboxes started`);
        return this.d.scheduler.startPurge(id, f.recipients, f.pass ?? "0");
    }
  }
}
