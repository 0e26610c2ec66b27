/** Starts the BullMQ workers of this process: timers, fan-out and notifications. */
import { DelayedError, UnrecoverableError, Worker, type Job } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { BULL_PREFIX, FANOUT_ATTEMPTS, JOBS, NOTIFY_ATTEMPTS, PAUSE_RECHECK_MS, QUEUES, fanoutBackoff, type JobData } from "../src/queues/catalogue.js";
import type { FanoutProcessor } from "./fanout.js";
import type { NotifyProcessor } from "./notify.js";
import type { TimerProcessor } from "./timers.js";
import type { PurgeProcessor } from "./purge.js";

export interface RunningWorkers {
  /**
   * Finishes the jobs in hand (or hands them back) and stops. Always resolves. `force` stops
   * without waiting for the jobs in hand (they are taken over once their lock expires).
   */
  close(opts?: { force?: boolean }): Promise<void>;
}

/**
 * BullMQ's lock options from WORKER_LOCK_SECONDS (L).
 *
 * A job's lock lasts L without renewal. A live worker renews it every L/6 (BullMQ's timer ticks
 * every half of lockRenewTime and renews what was last renewed more than half of it ago), so an
 * event loop may stand still for up to 5L/6 before the lock lapses: 5 s at the default L = 6 s,
 * against the 3 s stall the reliability goal names. A dead worker stops renewing; its lock lapses
 * at most L after its last renewal, and the stalled-job check, run every L/3 by each worker,
 * needs at most one more interval to see the lapse (a job is moved only when it was marked at the
 * previous check and has no lock at this one): the jobs are back in the queue at most L + L/3
 * after the death (8 s at the default, within the 10 s goal), and a free worker takes them at once.
 * A stalled job is one whose worker died, not the job's fault: it is not failed for it (BullMQ's
 * default fails it at the second stall).
 */
export function lockTiming(lockMs: number): { lockDuration: number; lockRenewTime: number; stalledInterval: number; maxStalledCount: number } {
  return { lockDuration: lockMs, lockRenewTime: Math.round(lockMs / 6), stalledInterval: Math.round(lockMs / 3), maxStalledCount: 20 };
}

export function runWorkers(opts: {
  connection: Redis;
  fanout: FanoutProcessor;
  timers: TimerProcessor;
  notify: NotifyProcessor;
  /** Null when no purge connector is configured: purge jobs then wait for a worker that has one. */
  purge?: PurgeProcessor | null;
  concurrency: number;
  /** WORKER_LOCK_SECONDS in ms: see lockTiming. */
  lockMs: number;
  logger: Logger;
}): RunningWorkers {
  const locking = lockTiming(opts.lockMs);
  const { connection, logger } = opts;
  const parse = <N extends keyof typeof JOBS>(name: N, job: Job) => {
    const r = JOBS[name].schema.safeParse(job.data);
    // A payload that does not match its schema can never succeed: do not retry it.
    if (!r.success) throw new UnrecoverableError(`job ${job.id} (${name}) has an invalid payload: ${r.error.message}`);
    return r.data as JobData<N>;
  };

  const timers = new Worker(
    QUEUES.timers,
    async (job) => {
      switch (job.name) {
        case "release":
          return opts.timers.release(parse("release", job));
        case "expire":
          return opts.timers.expire(parse("expire", job));
        case "sweep":
          return opts.timers.sweep();
        case "planWaves":
          return opts.timers.planWaves(parse("planWaves", job));
        case "nextWave":
          return opts.timers.nextWave(parse("nextWave", job));
        default:
          throw new UnrecoverableError(`unknown timer job ${job.name}`);
      }
    },
    { connection, prefix: BULL_PREFIX, concurrency: 4, ...locking },
  );

  const fanout = new Worker(
    QUEUES.fanout,
    async (job, token) => {
      const lastAttempt = job.attemptsMade + 1 >= (job.opts.attempts ?? FANOUT_ATTEMPTS);
      const batch = parse("batch", job);
      const outcome = await opts.fanout.process(batch, lastAttempt);
      if (typeof outcome === "object") {
        // Waiting for purge answers before a correction (workers/fanout.ts): not an attempt either.
        // It resumes at the transaction that waited, not at the batch's start again.
        await job.updateData({ ...batch, first: outcome.first });
        await job.moveToDelayed(Date.now() + outcome.laterMs, token);
        throw new DelayedError();
      }
      if (outcome === "paused") {
        // Out of the worker's hands until the resume wakes it (or PAUSE_RECHECK_MS passed); not an attempt.
        await job.moveToDelayed(Date.now() + PAUSE_RECHECK_MS, token);
        // A resume (or recall) that committed while this job was still active found it not yet
        // delayed and so could not wake it. Parked first, asked second: either the waker sees the job
        // delayed, or this sees the pause gone and wakes itself (a second promote is refused, harmlessly).
        if (!(await opts.fanout.stillPaused(batch.id))) await job.promote().catch(() => {});
        throw new DelayedError();
      }
    },
    {
      connection,
      prefix: BULL_PREFIX,
      ...locking,
      // One SMTP transaction in flight per job: as many jobs as pooled connections.
      concurrency: opts.concurrency,
      settings: { backoffStrategy: (attemptsMade: number) => fanoutBackoff(attemptsMade) },
    },
  );

  const notify = new Worker(
    QUEUES.notify,
    async (job) => opts.notify.process(parse("notify", job), job.attemptsMade + 1 >= (job.opts.attempts ?? NOTIFY_ATTEMPTS)),
    // Few and small: two at a time keeps them off the fan-out's connections' backs.
    { connection, prefix: BULL_PREFIX, concurrency: 2, ...locking },
  );

  // One job (a range of recipients) at a time per process: the job purges PURGE_CONCURRENCY
  // mailboxes at once, and the shared rate bucket paces every worker's together.
  const purge = opts.purge
    ? new Worker(QUEUES.purge, async (job) => opts.purge!.process(parse("purge", job)), { connection, prefix: BULL_PREFIX, concurrency: 1, ...locking })
    : null;

  for (const w of [timers, fanout, notify, ...(purge ? [purge] : [])]) {
    w.on("failed", (job, err) => {
      const data = (job?.data ?? {}) as { id?: unknown; revision?: unknown };
      logger.warn({ job: job?.id, attempt: job?.attemptsMade, message: data.id, revision: data.revision }, `job ${job?.id} failed: ${err.message}`);
    });
    w.on("error", (err) => logger.error({ err }, `worker ${w.name}: ${err.message}`));
  }

  return {
    async close(opts = {}) {
      await Promise.allSettled([timers.close(opts.force), fanout.close(opts.force), notify.close(opts.force), purge?.close(opts.force)]);
    },
  };
}
