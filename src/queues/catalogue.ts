/**
 * The job catalogue: every queue, every job name, its payload schema and options, in one place.
 * Payloads carry ids and index ranges, never recipient lists or secrets; they are validated when
 * enqueued and again when processed.
 */
import { z } from "zod";
import { NOTIFICATION_KINDS } from "../notify/notification-data.js";
import { QUEUE_PREFIX } from "../store/keys.js";

export const QUEUES = {
  /** Delayed jobs on the clock: release after the hold, expiry of an approval request, the sweep. */
  timers: "timers",
  /** Fan-out batches of the original and of the correction notice. */
  fanout: "fanout",
  /**
   * Notifications to authors and approvers. A queue of their own, so that a recall notice never
   * waits behind the batches of a million-recipient fan-out.
   */
  notify: "notify",
  /**
   * Purges of a recalled original from its recipients' mailboxes. A queue of its own: a mailbox
   * server's pace never holds a fan-out (the standard correction waits for purge answers at most
   * PURGE_CORRECTION_WAIT_SECONDS, its jobs aside, holding no worker).
   */
  purge: "purge",
} as const;

export const BULL_PREFIX = QUEUE_PREFIX;

const id = z.string().regex(/^[1-9][0-9]{0,15}$/);

export const JOBS = {
  release: { queue: QUEUES.timers, schema: z.object({ id, revision: z.number().int().positive() }) },
  expire: { queue: QUEUES.timers, schema: z.object({ id, revision: z.number().int().positive() }) },
  sweep: { queue: QUEUES.timers, schema: z.object({}) },
  /** A staged send was released: make its plan of waves (workers/wave-planner.ts). */
  planWaves: { queue: QUEUES.timers, schema: z.object({ id }) },
  /** The end of a staged send's wait after the canary: the rest goes (unless halted). */
  nextWave: { queue: QUEUES.timers, schema: z.object({ id }) },
  batch: {
    queue: QUEUES.fanout,
    schema: z.object({
      id,
      kind: z.enum(["original", "correction"]),
      first: z.number().int().nonnegative(),
      last: z.number().int().nonnegative(),
      /** A staged send's original: the wave this job sends (1 seed cohort, 2 canary, 3 the rest; store/lua/claim.lua). */
      wave: z.number().int().min(1).max(3).optional(),
    }),
  },
  purge: {
    queue: QUEUES.purge,
    schema: z.object({
      id,
      first: z.number().int().nonnegative(),
      last: z.number().int().nonnegative(),
      /** Take those not found or failed before too (a later pass, or the sweep's re-drive). */
      again: z.boolean(),
    }),
  },
  notify: {
    queue: QUEUES.notify,
    schema: z.object({
      kind: z.enum(NOTIFICATION_KINDS),
      id,
      revision: z.number().int().positive(),
      to: z.email(),
      /** The audit entry that caused it (its stream id). */
      entry: z.string().regex(/^[0-9]{1,20}-[0-9]{1,20}$/),
    }),
  },
} as const;

export type JobName = keyof typeof JOBS;
export type JobData<N extends JobName> = z.infer<(typeof JOBS)[N]["schema"]>;

/** Recipients per fan-out job: large enough that job overhead is small, small enough that a crash redoes little. */
export const BATCH_SIZE = 1000;

/**
 * Recipients per purge job: the purge goes through them in index order, like the correction that
 * may wait for it (store/lua/claim.lua), so that corrections flow while the purge advances.
 */
export const PURGE_BATCH_SIZE = 200;

/** Attempts and backoff of fan-out and notify jobs: defined with the rule that decides what is retried. */
export { FANOUT_ATTEMPTS, fanoutBackoff, NOTIFY_ATTEMPTS, NOTIFY_BACKOFF } from "../mail/smtp-outcome.js";

/**
 * A batch job of a paused fan-out waits in BullMQ's delayed set and looks again this much later.
 * A resume wakes them at once (Scheduler.wakeFanout), so this only bounds how late one is that a
 * crash kept from being woken; 30 s keeps a paused million (1,000 jobs) to ~33 claims a second.
 */
export const PAUSE_RECHECK_MS = 30_000;

/** Every `SWEEP_EVERY_MS` a sweep re-drives anything whose delayed job was lost (a crash between commit and enqueue). */
export const SWEEP_EVERY_MS = 5000;
