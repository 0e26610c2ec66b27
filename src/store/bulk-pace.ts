/**
 * Bulk work gives way to sends (issue 18). An audience upload's chunks and a freeze's slices are
 * each a few milliseconds of Redis (and, for an upload, of the API's event loop), but a million of
 * rows is a thousand of them back to back: while a fan-out runs, that takes Redis and the CPU from
 * the claims and settles that hand recipients to SMTP, and from the recalls that stop them. So,
 * while any fan-out job is running (an original's or a correction's), bulk work waits `ratio`
 * times as long as its last slice took before the next one: at the default 3 it uses at most a
 * quarter of the time, and an upload of a million takes up to four times as long during a send.
 * With no send running it goes at full speed. `ratio` 0 turns the pacing off (`BULK_PACE_RATIO`).
 *
 * Each stream of bulk work paces itself: two uploads and a freeze at once may each take a quarter.
 * "A fan-out job runs" includes one waiting for the send-rate bucket (SEND_RATE_PER_SECOND): during
 * a long rate-limited send, uploads go at a quarter of their speed although the send leaves the
 * machine idle (BULK_PACE_RATIO=0 if that matters more).
 *
 * Bulk work also gives way to stops (a recall, an ops pause or halt: MessageService runs each
 * inside `duringStop`): while one runs in this process, every stream of bulk work waits before its
 * next slice until the stops are answered (at most 250 ms a slice), send or no send. A stop is a few
 * Redis round trips, and between two of them the API's event loop would otherwise run whatever
 * bulk work is ready (a chunk of CSV parsed and checked, a freeze's slice), as in the bench's
 * recall-under-load window before any send runs (docs/performance.md, session 26).
 * Only this process's bulk work gives way: another API process's upload does not hear of it.
 *
 * Measured (docs/performance-history.md, session 24): with a million-row upload, a
 * million's freeze and a million's fan-out at once on two cores, the fan-out ran at 38,000-53,000
 * recipients/s unpaced and 71,000-90,000/s paced at 3 (0.49-0.81 of its rate alone), and recalls
 * answered in a median of 17-22 ms instead of 44-52 ms.
 */

/** Whether a send is running, asked at most this often (one Redis read): sends last seconds or more. */
const CHECK_EVERY_MS = 250;
/**
 * How long a slice waits for the check before going on with the last answer: the queue connection
 * retries forever while Redis is away, and bulk work must then fail as it would have, not hang on
 * its pacing.
 */
const CHECK_TIMEOUT_MS = 100;
/**
 * The longest share of a send's time after one slice: a slice stalled by a hiccup (a preempted
 * Redis, a GC pause) does not stall the upload for seconds after it. (Waits for stops come on top,
 * at most MAX_STOP_WAIT_MS a slice.)
 */
const MAX_WAIT_MS = 250;
/**
 * The longest a slice waits for this process's stops to be answered, before and after its share
 * together: a recall answers in tens of milliseconds, and one held up (Redis away, replicas late)
 * must not stall uploads and freezes with it. Timed with the global setTimeout (unit tests fake it).
 */
const MAX_STOP_WAIT_MS = 250;

export interface BulkPaceOptions {
  /** Wait this many times a slice's duration after it while a send runs; 0: never wait (not for stops either). */
  ratio: number;
  /** Is any fan-out job running? (the fan-out queue's active jobs). */
  sendsRunning(): Promise<boolean>;
  now?(): number;
  sleep?(ms: number): Promise<void>;
  /** Told each wait, in ms (the `airlock_bulk_paced_seconds_total` counter). */
  onWait?(ms: number): void;
}

/** A BulkPace's waits for one stream of bulk work, within its budget (BulkPace.budget). */
export type PacedStream = Pick<BulkPace, "start" | "after" | "afterWork">;

export class BulkPace {
  /** Stops running in this process (duringStop), and what ends the wait of bulk work for them. */
  private stops = 0;
  private calm: { promise: Promise<void>; resolve(): void } | null = null;
  private checkedAt = -Infinity;
  private running = false;
  private inflight: Promise<void> | null = null;
  private readonly now: () => number;
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly o: BulkPaceOptions) {
    if (!(o.ratio >= 0)) throw new RangeError("the bulk pace ratio must be 0 or more");
    this.now = o.now ?? (() => performance.now());
    // A wait between two slices of bulk work, for the reason at the top of this file.
    this.sleep = o.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms)));
  }

  /** Starts timing a slice; give what it returns to `after` once the slice is done. */
  start(): number {
    return this.now();
  }

  /** After a slice begun at `startedAt`: waits for this process's stops, and its share while a send runs (afterWork). Answers the ms waited. */
  after(startedAt: number): Promise<number> {
    return this.afterWork(this.now() - startedAt);
  }

  /**
   * After a slice that worked `took` ms (measured by the caller: an upload leaves out its wait for
   * the client's bytes): waits for this process's stops, then its share while a send runs. Answers
   * the ms waited.
   */
  async afterWork(took: number): Promise<number> {
    if (this.o.ratio === 0) return 0;
    const forStops = await this.giveWayToStops(MAX_STOP_WAIT_MS);
    if (!(await this.sendsRunning())) return forStops;
    const ms = Math.min(MAX_WAIT_MS, took * this.o.ratio);
    if (ms < 1) return forStops;
    this.o.onWait?.(ms);
    await this.sleep(ms);
    // A stop that began during the share (most of the time, while a send runs) is waited for too,
    // within what is left of the slice's MAX_STOP_WAIT_MS.
    return forStops + ms + (await this.giveWayToStops(MAX_STOP_WAIT_MS - forStops));
  }

  /**
   * Runs `work`, a stop (a recall, an ops pause): meanwhile this process's bulk work waits before
   * its next slice, so that the stop's round trips do not queue behind it in the event loop and in
   * Redis. A slice already under way finishes first.
   */
  async duringStop<T>(work: () => Promise<T>): Promise<T> {
    this.stops++;
    try {
      return await work();
    } finally {
      if (--this.stops === 0 && this.calm) {
        this.calm.resolve();
        this.calm = null;
      }
    }
  }

  /**
   * Waits until no stop runs in this process, at most `limitMs` in all (a stop that begins as the
   * last one ends is waited for too, within the same limit). Answers the ms waited.
   */
  private async giveWayToStops(limitMs: number): Promise<number> {
    if (this.stops === 0 || limitMs <= 0) return 0;
    const since = this.now();
    let timedOut = false;
    let timer: NodeJS.Timeout | undefined;
    const limit = new Promise<void>((r) => {
      timer = setTimeout(() => {
        timedOut = true;
        r();
      }, limitMs);
    });
    try {
      while (this.stops > 0 && !timedOut) await Promise.race([this.calmed(), limit]);
    } finally {
      clearTimeout(timer);
    }
    const ms = this.now() - since;
    if (ms > 0) this.o.onWait?.(ms);
    return ms;
  }

  /** Settles once no stop runs (those running now, and any that begin before it settles). */
  private calmed(): Promise<void> {
    if (!this.calm) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.calm = { promise, resolve };
    }
    return this.calm.promise;
  }

  /**
   * One stream of bulk work (an upload, a freeze) that gives way for at most `budgetMs` in all:
   * bulk work is an HTTP request (Node gives it 300 s), and must end however long sends run. The
   * last wait may end past the budget, by at most one slice's waits (MAX_STOP_WAIT_MS + MAX_WAIT_MS).
   */
  budget(budgetMs: number): PacedStream {
    let waited = 0;
    const within = async (wait: () => Promise<number>) => {
      if (waited >= budgetMs) return 0;
      const ms = await wait();
      waited += ms;
      return ms;
    };
    return { start: () => this.start(), after: (startedAt) => within(() => this.after(startedAt)), afterWork: (took) => within(() => this.afterWork(took)) };
  }

  private async sendsRunning(): Promise<boolean> {
    const now = this.now();
    // One check at a time: while Redis is away the queue connection holds a check until it is back.
    if (now - this.checkedAt >= CHECK_EVERY_MS && !this.inflight) {
      this.checkedAt = now;
      this.inflight = this.o
        .sendsRunning()
        .then(
          (r) => void (this.running = r),
          () => void (this.running = false), // unknown (a Redis error): assume none, bulk work must not stall on the check
        )
        .finally(() => (this.inflight = null));
    }
    if (this.inflight) {
      // Not answered in time (Redis away, or this process busy): go on with the last answer.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.inflight, new Promise<void>((r) => (timer = setTimeout(r, CHECK_TIMEOUT_MS)))]);
      clearTimeout(timer);
    }
    return this.running;
  }
}

/** Bulk work at full speed always (tests and tools that run no sends). */
export const UNPACED = new BulkPace({ ratio: 0, sendsRunning: async () => false });
