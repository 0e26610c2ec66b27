/**
 * Prometheus metrics (`GET /metrics`).
 *
 * Two kinds: figures read from Redis at scrape time (messages by state, recipients by outcome,
 * possible duplicates, queue depths) are the same whichever API process is scraped, so they are
 * gauges of the shared truth; figures only a worker sees (SMTP transaction latency, recall-to-stop
 * latency) are this process's own histograms, summed across processes by Prometheus as usual.
 */
import type { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";
import { STATES } from "../domain/lifecycle.js";
import { keys } from "../store/keys.js";

export interface Metrics {
  registry: Registry;
  /** One SMTP transaction of a fan-out, by kind (original/correction) and result (ok, permanent, temporary, ambiguous). */
  smtpTransaction: Histogram<"kind" | "result">;
  /** From a recall's answer until nothing of the original was in an SMTP transaction any more. */
  recallToStop: Histogram<never>;
  /** Time bulk work (uploads, freezes) waited for running sends and for this process's stops (recalls, pauses): store/bulk-pace.ts. */
  bulkPaced: Counter<never>;
  /** Redis AOF rewrites this process started: infra/aof-rewrite.ts. */
  aofRewrites: Counter<"start">;
}

/** Message hash fields summed into airlock_recipients{outcome}. */
const OUTCOMES = {
  sent: "sent",
  failed: "failed",
  skipped: "skipped",
  corrected: "corrected",
  correction_failed: "correctionFailed",
  // The purge from the mailboxes after a recall (store/lua/purge.lua), each recipient once it ended.
  purged: "purged",
  purge_not_found: "purgeNotFound",
  purge_failed: "purgeFailed",
} as const;

export function createMetrics(d: { redis: Redis; queues: Queue[] }): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: "airlock_" });

  new Gauge({
    name: "airlock_messages",
    help: "Messages by lifecycle state",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      const pipe = d.redis.pipeline();
      for (const s of STATES) pipe.zcard(keys.messagesInState(s));
      const res = (await pipe.exec()) ?? [];
      STATES.forEach((s, i) => this.set({ state: s }, Number(res[i]?.[1] ?? 0)));
    },
  });

  // Summed over every message: one pipelined HMGET per message per scrape. Messages number in the
  // thousands a year (recipients live elsewhere), so this stays cheap; a global counter hash
  // maintained by the scripts would be the next step if that changes.
  // Registered after the gauge whose collect() sets them: the registry collects in registration order.
  let duplicates: Gauge | null = null;
  let scraped: Gauge | null = null;
  new Gauge({
    name: "airlock_recipients",
    help: "Recipients of all messages by delivery outcome",
    labelNames: ["outcome"],
    registers: [registry],
    async collect() {
      const ids = await d.redis.zrange(keys.messagesByTime(), "0", "-1");
      const fields = [...Object.values(OUTCOMES), "possibleDuplicates"];
      const totals = new Array<number>(fields.length).fill(0);
      for (let i = 0; i < ids.length; i += 1000) {
        const pipe = d.redis.pipeline();
        for (const id of ids.slice(i, i + 1000)) pipe.hmget(keys.message(id), ...fields);
        for (const [, values] of (await pipe.exec()) ?? []) (values as Array<string | null>).forEach((v, j) => (totals[j]! += Number(v ?? 0)));
      }
      Object.keys(OUTCOMES).forEach((outcome, j) => this.set({ outcome }, totals[j]!));
      duplicates?.set(totals[fields.length - 1]!);
      scraped?.set(ids.length);
    },
  });
  new Gauge({
    name: "airlock_purges_running",
    help: "Recalled messages whose removal from the mailboxes has started and not ended",
    registers: [registry],
    async collect() {
      this.set(await d.redis.zcard(keys.purgesRunning()));
    },
  });
  duplicates = new Gauge({ name: "airlock_possible_duplicates", help: "Recipients whose transaction was cut off at an unknown point and retried", registers: [registry] });
  scraped = new Gauge({ name: "airlock_recipients_scrape_messages", help: "Messages summed by the last scrape", registers: [registry] });

  new Gauge({
    name: "airlock_queue_jobs",
    help: "BullMQ jobs by queue and state",
    labelNames: ["queue", "state"],
    registers: [registry],
    async collect() {
      for (const q of d.queues) {
        const counts = await q.getJobCounts("waiting", "active", "delayed", "failed", "prioritized");
        for (const [state, n] of Object.entries(counts)) this.set({ queue: q.name, state }, n);
      }
    },
  });

  return {
    registry,
    smtpTransaction: new Histogram({
      name: "airlock_smtp_transaction_seconds",
      help: "Duration of one fan-out SMTP transaction",
      labelNames: ["kind", "result"],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [registry],
    }),
    recallToStop: new Histogram({
      name: "airlock_recall_to_stop_seconds",
      help: "From a recall's answer until no recipient of the original was in an SMTP transaction",
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    bulkPaced: new Counter({
      name: "airlock_bulk_paced_seconds_total",
      help: "Time uploads and recipient freezes waited between slices for running sends and for this process's recalls and pauses (BULK_PACE_RATIO)",
      registers: [registry],
    }),
    aofRewrites: new Counter({
      name: "airlock_aof_rewrites_total",
      help: "Redis AOF rewrites this process asked for while Redis was quiet (REDIS_AOF_REWRITE=when-quiet): start=now, or scheduled when Redis had another child process",
      labelNames: ["start"],
      registers: [registry],
    }),
  };
}
