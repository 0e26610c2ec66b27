/** Enqueues jobs of the catalogue. Job ids are deterministic, so enqueuing twice does no harm. */
import { Job, Queue } from "bullmq";
import type { Redis } from "ioredis";
import { createHash } from "node:crypto";
import { BATCH_SIZE, BULL_PREFIX, FANOUT_ATTEMPTS, JOBS, NOTIFY_ATTEMPTS, NOTIFY_BACKOFF, PURGE_BATCH_SIZE, QUEUES, SWEEP_EVERY_MS, type JobData } from "./catalogue.js";
import type { Clock } from "../domain/clock.js";

/**
 * The order fan-out jobs are taken in (BullMQ: 0, no priority, first; then 1, 2, … each in FIFO).
 * A correction (0) is never queued behind another message's fan-out: it is what a recall is for.
 * An original goes by the size of its audience (1 + ⌈log2 n⌉: 1 for one recipient, 21 for a
 * million), so that a 900-recipient message released during a million's fan-out is not sent after
 * the million's 1,000 queued batches; equally large messages keep their order. The other way round,
 * a small original released during a million-recipient correction waits for the correction's batches.
 */
export function fanoutPriority(kind: "original" | "correction", recipientCount: number, wave?: number): number {
  // A staged send's early waves are a few recipients each: they go like a small message.
  if (kind === "original" && wave !== undefined && wave < 3) return 1;
  return kind === "correction" ? 0 : 1 + Math.ceil(Math.log2(Math.max(1, recipientCount)));
}

/**
 * A fan-out batch's job id: one per message, kind and range (and wave of a staged send, whose
 * every wave goes through the whole range again), so that adding it twice does nothing.
 */
const batchJobId = (kind: "original" | "correction", id: string, n: number, wave?: number) => `${kind}-${id}-${n}${wave === undefined ? "" : `-w${wave}`}`;

export interface Scheduler {
  scheduleRelease(id: string, revision: number, releaseAtMs: number): Promise<void>;
  scheduleExpiry(id: string, revision: number, expiresAtMs: number): Promise<void>;
  startFanout(id: string, kind: "original" | "correction", recipientCount: number, wave?: number): Promise<void>;
  /** After a resume: the fan-out's batch jobs that wait out a pause (delayed) run now. */
  wakeFanout(id: string, kind: "original" | "correction", recipientCount: number, wave?: number): Promise<void>;
  /** A staged send was released: its plan of waves is made by a timer worker. */
  planWaves(id: string): Promise<void>;
  /** The rest of a staged send goes at `atMs` (the end of the wait after its canary). */
  scheduleWave(id: string, atMs: number): Promise<void>;
  /**
   * The purge jobs of a recalled original, one per PURGE_BATCH_SIZE indexes. `pass` names the
   * round: "0" the first (once per message), a later one takes again those not found or failed.
   */
  startPurge(id: string, recipientCount: number, pass: string, atMs?: number): Promise<void>;
  /** One range's next pass at `atMs` (those not found or failed, tried again). */
  retryPurge(id: string, first: number, last: number, atMs: number): Promise<void>;
  close(): Promise<void>;
}

/**
 * Old finished jobs removed per finishing job. BullMQ removes those past their age when another
 * job of the queue finishes, by default up to 1,000 in that one script: a day after a million's
 * fan-out, its 1,000 batches would go in one Redis block (tens of ms, a recall waiting behind it).
 * 50 at a time keeps up, as every new job finishing removes up to 50.
 */
const REMOVE_PER_FINISH = 50;
/** Purge jobs live a week after they ended (a repeated add of the same id is then a no-op). */
const PURGE_JOB_OPTIONS = { attempts: 5, backoff: { type: "exponential", delay: 5000 }, removeOnComplete: { age: 7 * 24 * 3600, limit: REMOVE_PER_FINISH }, removeOnFail: { age: 7 * 24 * 3600, limit: REMOVE_PER_FINISH } } as const;

/**
 * Jobs per `addBulk`. BullMQ adds a bulk in one MULTI/EXEC, which Redis runs as one block: 500 jobs
 * kept it from everyone else for 50-100 ms here (a PING waited that long; the slow log does not show
 * it, EXEC is not logged), so a recall arriving while a million's 1,000 batches were queued waited
 * behind two such blocks. 50 jobs block it ~3-5 ms; a million's batches take 20 round trips.
 */
const ENQUEUE_CHUNK = 50;

export class BullScheduler implements Scheduler {
  readonly timers: Queue;
  readonly fanout: Queue;
  readonly notifications: Queue;
  readonly purge: Queue;

  constructor(
    connection: Redis,
    private readonly clock: Clock,
  ) {
    this.timers = new Queue(QUEUES.timers, { connection, prefix: BULL_PREFIX });
    this.fanout = new Queue(QUEUES.fanout, { connection, prefix: BULL_PREFIX });
    this.notifications = new Queue(QUEUES.notify, { connection, prefix: BULL_PREFIX });
    this.purge = new Queue(QUEUES.purge, { connection, prefix: BULL_PREFIX });
  }

  /** Is any fan-out job (an original's or a correction's batch) being worked on now, by any worker? */
  async sendsRunning(): Promise<boolean> {
    return (await this.fanout.getActiveCount()) > 0;
  }

  /**
   * One job per person to notify. The id is derived from the audit entry, the kind and the
   * address, so an entry handled twice (a dispatcher restart) enqueues nothing twice.
   */
  async notify(jobs: Array<JobData<"notify">>): Promise<void> {
    if (jobs.length === 0) return;
    await this.notifications.addBulk(
      jobs.map((j) => ({
        name: "notify",
        data: JOBS.notify.schema.parse(j),
        opts: {
          jobId: `notify-${j.entry}-${j.kind}-${createHash("sha256").update(j.to).digest("hex").slice(0, 16)}`,
          attempts: NOTIFY_ATTEMPTS,
          backoff: NOTIFY_BACKOFF,
          // Kept a day so that a re-handled entry finds the id and adds nothing.
          removeOnComplete: { age: 24 * 3600, limit: REMOVE_PER_FINISH },
          removeOnFail: { age: 7 * 24 * 3600, limit: REMOVE_PER_FINISH },
        },
      })),
    );
  }

  async scheduleRelease(id: string, revision: number, releaseAtMs: number): Promise<void> {
    const data: JobData<"release"> = JOBS.release.schema.parse({ id, revision });
    await this.timers.add("release", data, {
      jobId: `release-${id}-${revision}-${releaseAtMs}`,
      delay: Math.max(0, releaseAtMs - this.clock.now()),
      removeOnComplete: true,
      removeOnFail: 1000,
    });
  }

  async scheduleExpiry(id: string, revision: number, expiresAtMs: number): Promise<void> {
    const data: JobData<"expire"> = JOBS.expire.schema.parse({ id, revision });
    await this.timers.add("expire", data, {
      jobId: `expire-${id}-${revision}`,
      delay: Math.max(0, expiresAtMs - this.clock.now()),
      removeOnComplete: true,
      removeOnFail: 1000,
    });
  }

  /**
   * One job per BATCH_SIZE recipients, by index range in the frozen set, in the order fanoutPriority
   * gives: a correction before any original, a smaller original before a larger one.
   */
  async startFanout(id: string, kind: "original" | "correction", recipientCount: number, wave?: number): Promise<void> {
    const priority = fanoutPriority(kind, recipientCount, wave);
    const jobs = [];
    for (let first = 0, n = 0; first < recipientCount; first += BATCH_SIZE, n++) {
      const data: JobData<"batch"> = JOBS.batch.schema.parse({ id, kind, first, last: Math.min(recipientCount, first + BATCH_SIZE) - 1, ...(wave === undefined ? {} : { wave }) });
      jobs.push({
        name: "batch",
        data,
        opts: {
          jobId: batchJobId(kind, id, n, wave),
          ...(priority > 0 ? { priority } : {}),
          attempts: FANOUT_ATTEMPTS,
          backoff: { type: "airlock" },
          // Kept a day so that a sweep re-adding the same id is a no-op instead of a re-run.
          removeOnComplete: { age: 24 * 3600, limit: REMOVE_PER_FINISH },
          removeOnFail: { age: 7 * 24 * 3600, limit: REMOVE_PER_FINISH },
        },
      });
    }
    for (let i = 0; i < jobs.length; i += ENQUEUE_CHUNK) await this.fanout.addBulk(jobs.slice(i, i + ENQUEUE_CHUNK));
  }

  async planWaves(id: string): Promise<void> {
    const data: JobData<"planWaves"> = JOBS.planWaves.schema.parse({ id });
    // Removed once done or failed for good (its error is logged): the sweep adds it again while the
    // plan is still to make (the planner checks that), so a lost or failed plan is made later.
    await this.timers.add("planWaves", data, { jobId: `plan-${id}`, attempts: 5, backoff: { type: "exponential", delay: 2000 }, removeOnComplete: true, removeOnFail: true });
  }

  async scheduleWave(id: string, atMs: number): Promise<void> {
    const data: JobData<"nextWave"> = JOBS.nextWave.schema.parse({ id });
    await this.timers.add("nextWave", data, { jobId: `wave-${id}-${atMs}`, delay: Math.max(0, atMs - this.clock.now()), removeOnComplete: true, removeOnFail: 1000 });
  }

  async wakeFanout(id: string, kind: "original" | "correction", recipientCount: number, wave?: number): Promise<void> {
    const ids = [];
    // A staged send: the jobs of every wave opened so far (an earlier wave's may still be parked).
    const waves = wave === undefined ? [undefined] : Array.from({ length: wave }, (_, i) => i + 1);
    for (const w of waves) for (let first = 0, n = 0; first < recipientCount; first += BATCH_SIZE, n++) ids.push(batchJobId(kind, id, n, w));
    // In slices, so a million recipients (1,000 jobs) is not 1,000 requests at once.
    for (let i = 0; i < ids.length; i += 100) {
      await Promise.all(
        ids.slice(i, i + 100).map(async (jobId) => {
          const job = await Job.fromId(this.fanout, jobId);
          // Only a job waiting out the pause; one that is running, waiting or done is left alone.
          // It may leave the delayed set between the check and the promote: then promote refuses, harmlessly.
          if (job && (await job.isDelayed())) await job.promote().catch(() => {});
        }),
      );
    }
  }

  async startPurge(id: string, recipientCount: number, pass: string, atMs?: number): Promise<void> {
    const delay = atMs === undefined ? 0 : Math.max(0, atMs - this.clock.now());
    const jobs = [];
    for (let first = 0, n = 0; first < recipientCount; first += PURGE_BATCH_SIZE, n++) {
      const data: JobData<"purge"> = JOBS.purge.schema.parse({ id, first, last: Math.min(recipientCount, first + PURGE_BATCH_SIZE) - 1, again: pass !== "0" });
      jobs.push({ name: "purge", data, opts: { jobId: `purge-${id}-${n}-${pass}`, delay, ...PURGE_JOB_OPTIONS } });
    }
    for (let i = 0; i < jobs.length; i += ENQUEUE_CHUNK) await this.purge.addBulk(jobs.slice(i, i + ENQUEUE_CHUNK));
  }

  async retryPurge(id: string, first: number, last: number, atMs: number): Promise<void> {
    const data: JobData<"purge"> = JOBS.purge.schema.parse({ id, first, last, again: true });
    await this.purge.add("purge", data, { jobId: `purge-${id}-${Math.floor(first / PURGE_BATCH_SIZE)}-at${atMs}`, delay: Math.max(0, atMs - this.clock.now()), ...PURGE_JOB_OPTIONS });
  }

  /** The sweep runs on every worker's schedule; upsert keeps exactly one scheduler. */
  async ensureSweep(): Promise<void> {
    await this.timers.upsertJobScheduler("sweep", { every: SWEEP_EVERY_MS }, { name: "sweep", data: {}, opts: { removeOnComplete: true, removeOnFail: 100 } });
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.timers.close(), this.fanout.close(), this.notifications.close(), this.purge.close()]);
  }
}
