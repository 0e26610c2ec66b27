/**
 * One purge job: a range of the frozen recipient set, whose recipients recorded `sent` get the
 * recalled original removed from their mailboxes by the configured connector (src/purge/). Before
 * each round the job claims its recipients in Redis (store/lua/purge.lua: in index order, under the
 * shared purge rate), then records what the connector answered for each.
 *
 * At least once: a job cut off by a crash is taken over by another worker (BullMQ's stalled-job
 * check) and claims the recipients it had in hand again; a connector's delete is idempotent, and a
 * purge recorded `purged` stays so. Not found and retryable failures are tried again, every
 * PURGE_NOT_FOUND_RETRY_EVERY_SECONDS, until PURGE_NOT_FOUND_RETRY_MINUTES after the purge
 * started (mail may still be in transit): then they are recorded for good.
 */
import type { Logger } from "pino";
import type { Clock } from "../src/domain/clock.js";
import type { PurgeConnector, PurgeResult } from "../src/purge/connector.js";
import type { JobData } from "../src/queues/catalogue.js";
import type { Scheduler } from "../src/queues/scheduler.js";
import type { MessageStore, PurgeOutcome } from "../src/store/message-store.js";

export interface PurgeTiming {
  /** Mailboxes purged at once by one job (PURGE_CONCURRENCY). */
  concurrency: number;
  /** Purges per second across every worker (PURGE_RATE_PER_SECOND). */
  ratePerSecond: number;
  /** How long after the purge started not found and retryable failures are still tried again. */
  retryForMs: number;
  /** How long between two tries of those. */
  retryEveryMs: number;
}

export interface PurgeDeps {
  store: MessageStore;
  connector: PurgeConnector;
  scheduler: Pick<Scheduler, "retryPurge">;
  timing: PurgeTiming;
  clock: Clock;
  logger: Logger;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class PurgeProcessor {
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly d: PurgeDeps) {
    this.sleep = d.sleep ?? defaultSleep;
  }

  async process(job: JobData<"purge">): Promise<void> {
    const { id, first, last, again } = job;
    const messageId = await this.d.store.messageIdOf(id);
    if (!messageId) return; // the message is gone: nothing to purge
    let cursor = first;
    let triesLeft = false;
    for (;;) {
      const claim = await this.d.store.purgeClaim(id, cursor, last, this.d.timing.concurrency, this.d.timing.ratePerSecond, again);
      if ("stopped" in claim) return;
      if ("wait" in claim) {
        // The shared purge-rate bucket is empty: wait until it has refilled enough for this round.
        await this.sleep(Math.min(claim.wait, 1000));
        continue;
      }
      if (!("claimed" in claim)) throw new Error(`message ${id}: unexpected purge claim answer`);
      if (claim.addresses.length === 0) break;
      const results = await Promise.all(claim.addresses.map((address) => this.d.connector.purge(address, messageId)));
      const final = this.d.clock.now() >= claim.startedAt + this.d.timing.retryForMs;
      const outcomes = results.map((r, j): PurgeOutcome => ({ index: claim.indexes[j]!, address: claim.addresses[j]!, ...outcomeOf(r) }));
      if (!final && outcomes.some((o) => o.outcome === "n" || o.outcome === "f")) triesLeft = true;
      const failed = outcomes.filter((o) => o.outcome === "f" || o.outcome === "F");
      if (failed.length > 0) this.d.logger.warn({ message: id, failed: failed.length }, `message ${id}: purge failed for ${failed.length} mailbox(es): ${failed[0]!.reason}`);
      await this.d.store.purgeSettle(id, final, outcomes);
      cursor = claim.next;
    }
    if (triesLeft) await this.d.scheduler.retryPurge(id, first, last, this.d.clock.now() + this.d.timing.retryEveryMs);
  }
}

function outcomeOf(r: PurgeResult): Pick<PurgeOutcome, "outcome" | "reason"> {
  switch (r.outcome) {
    case "purged":
      return { outcome: "p", reason: "" };
    case "not_found":
      return { outcome: "n", reason: "" };
    case "failed":
      return { outcome: r.retry ? "f" : "F", reason: r.reason.slice(0, 500) };
  }
}
