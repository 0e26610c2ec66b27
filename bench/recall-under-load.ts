/**
 * The recall-under-load phase (issue 18): is a recall answered in milliseconds whatever else the
 * service is doing? One service, its API and its workers in a process each (as a deployment that
 * takes million-row uploads runs them), and, all at once:
 *
 * - a large audience upload (streamed CSV),
 * - the submit of another message to a large audience (its freeze),
 * - `edits` edits of a pending message to a large audience (each a new revision; every one adds or
 *   drops an explicit address, so that each freezes the million again: an edit of the text alone
 *   keeps its recipients and would copy nothing),
 * - a batched fan-out of a third message to a large audience (its rate against the same fan-out
 *   alone, measured before in the same run),
 * - `sseClients` dashboards on `GET /api/stream` (bench/sse-clients.mts, a process of their own,
 *   reading every byte) and one that never reads,
 *
 * and, during all that, a recall every `recallEveryMs` (sent and timed by bench/recall-client.mts, a
 * process that does nothing else, as an operator's browser) of a small message, either scheduled (a
 * one-hour hold) or sending: those go to a slow domain that the phase's sink (bench/load-sink-server.mts)
 * answers `slowMs` late per transaction, so each takes seconds to send and is recalled mid-way,
 * without slowing the large fan-out's transactions. Reported: the recall's answer time at the
 * client, how long each recalled sending message's fan-out went on (its last hand-off at the
 * sink after the recall was sent), recipients the sink got beyond what each recall answered as
 * delivered (`sentAfterAck`, must be 0), Redis's slow commands (bench/redis-evidence.ts), the
 * fan-out's rate under load against alone, what the dashboards cost a fan-out alone (`sseCostPercent`),
 * and whether the never-reading client was dropped with the service's memory flat.
 */
import { monitorEventLoopDelay } from "node:perf_hooks";
import type { Redis } from "ioredis";
import { aofDecision, parseAofState, type KeptRule } from "../src/infra/aof-rewrite.js";
import { keys } from "../src/store/keys.js";
import { startHelper, type HelperProcess } from "./child-ipc.js";
import { address, api as apiOf, importAudience, MAIL, pollUntil, type Api } from "./phases.js";
import { watchRedis, type RedisEvidence } from "./redis-evidence.js";
import { mean, round1 } from "./numbers.js";
import { benchToken, cpuSeconds, type RunningService, type RunQueueWaits } from "./service.js";
import { floodSlowClient, type SlowClientResult } from "./sse-flood.js";
import type { MessageStats } from "./load-sink-server.mjs";

export interface RecallUnderLoadOptions {
  /** Starts the phase's service sending to `smtpUrl` (run.mts's helper: an API process and a worker process, 50 per transaction). */
  startService(smtpUrl: string): Promise<RunningService>;
  redis: Redis;
  redisUrl: string;
  redisPid: number;
  /** Recipients of each large audience: the upload, the submit, the edited message, the fan-out. */
  recipients: number;
  sseClients?: number;
  edits?: number;
  recallEveryMs?: number;
  /** Recalls at least this many even when the load is over sooner. */
  minRecalls?: number;
  /** Recipients of each small sending message (at 50 per transaction, slowMs each). */
  slowRecipients?: number;
  slowMs?: number;
  scheduledMessages?: number;
  /** Fan-outs alone and with the dashboards, in the order A B B A (1: A B). */
  sseRepeats?: 1 | 2;
  log?(s: string): void;
}

export interface RecallRecord {
  id: string;
  kind: "scheduled" | "sending";
  status: number;
  ms: number;
  delivered: number;
  /** Sending only: the last hand-off of its original at the sink after the recall was sent (0: none after it). */
  stopMs: number | null;
  /** Sending only: the end of its last transaction at the sink after the recall was sent (the slow answer included). */
  drainMs: number | null;
  /** Distinct recipients at the sink beyond `delivered`. */
  sentAfterAck: number;
  /** Sending only: some of its recipients had been handed over before the recall was sent. */
  startedBefore: boolean;
  /** All its recipients had been handed over before the recall (it came too late to stop anything). */
  finishedBefore: boolean;
}

export interface RecallUnderLoadResult {
  p50Ms: number | null;
  p99Ms: number | null;
  maxMs: number | null;
  stopMsMax: number | null;
  sentAfterAck: number;
  duplicates: number;
  slowestRedisMs: number | null;
  slowestRedisCommands: Array<{ ms: number; command: string }>;
  fanoutRateRatio: number | null;
  /** Rate lost to the dashboards: 1 − (fan-out rate with them / alone), in %. */
  sseCostPercent: number | null;
  /** The service's CPU seconds per fan-out with the dashboards against alone, in % more (less noisy on a shared machine). */
  sseCostCpuPercent: number | null;
  recalls: { total: number; scheduled: number; sending: number; sendingStarted: number; errors: number; missedTicks: number; finishedBefore: number };
  recipients: number;
  fanout: { aloneRcptPerSec: number[]; withDashboardsRcptPerSec: number[]; serviceCpuSecondsAlone: number[]; serviceCpuSecondsWithDashboards: number[]; underLoadRcptPerSec: number; underLoadSeconds: number };
  load: { windowSeconds: number; uploadSeconds: number; submitSeconds: number; editsSeconds: number; editMaxSeconds: number; edits: number; dashboards: number; dashboardFramesMin: number; dashboardsOpenAtEnd: number };
  slowClient: SlowClientResult | null;
  /** The driver's own event-loop delay during the window (the recalls are timed apart, in bench/recall-client.mts). */
  driverLoopDelayMs: { p99: number; max: number };
  /** The API process's event-loop delay during the window (its /metrics, reset when the window opens): a recall waits that long for its turn. */
  apiLoopDelayMs: { p99: number | null; max: number | null };
  /** PINGs to Redis every 10 ms during the window, from a process that does nothing else: how long the smallest command waited for its turn. */
  redisPing: PingStats;
  /**
   * How long Redis's main thread was ready to run but waited for a core in the window (read every
   * 50 ms by bench/recall-client.mts): in all, the longest 50 ms slot's share, and the slots with
   * more than 10 ms of it. A command's time in the slow log includes any such wait inside it. Null
   * where the kernel does not tell.
   */
  redisCpuWait: RunQueueWaits | null;
  cpuSecondsInWindow: Record<string, number>;
  servicePeakRssMb: number;
  redis: RedisEvidence;
  /** Redis's AOF around the window: its base and size (MB), the rewrites that began in the window, and how long the phase waited before it for a due rewrite to finish. */
  aof: AofEvidence;
  recallList: RecallRecord[];
}

type AofEvidence = { baseMbAtStart: number; sizeMbAtStart: number; sizeMbAtEnd: number; rewritesInWindow: number; waitedBeforeSeconds: number | null };

async function aofNow(redis: Redis) {
  const info = await redis.info("persistence");
  // aof_rewrites counts a rewrite from its fork on; one only scheduled is not counted yet.
  const scheduledOnly = /^aof_rewrite_scheduled:1/m.test(info) && !/^aof_rewrite_in_progress:1/m.test(info);
  return { ...parseAofState(info), rewrites: Number(/^aof_rewrites:(\d+)/m.exec(info)?.[1] ?? 0), scheduledOnly };
}

/**
 * Before the window, a quiet moment for Redis: with REDIS_AOF_REWRITE=when-quiet (the default) the
 * workers rewrite the AOF when Redis is quiet, which a production service is between its busy
 * minutes, but the phase's setup (a million imported, four fan-outs of it) runs back to back and
 * may leave a rewrite due; the window would then start with the backstop's rewrite sooner than a
 * service that had a quiet moment. So: wait (at most 90 s) until no rewrite is due or running.
 * Nothing waits with `--aof-rewrite redis|off` (no rule kept by Airlock): with Redis's own rule the
 * base is whatever its last rewrite left, which is what Redis's rule gives a busy minute (it fires
 * while the file grows, that is while Airlock is busy). A Redis never quiet within 90 s: the window
 * opens anyway, and the wait says so (null).
 */
async function quietAof(redis: Redis): Promise<number | null> {
  const kept = await redis.get(keys.aofRule());
  const t0 = performance.now();
  if (kept === null) return 0;
  const [, minSize] = (await redis.config("GET", "auto-aof-rewrite-min-size")) as [string, string];
  const rule = { percentage: (JSON.parse(kept) as KeptRule).percentage, minSize: Number(minSize) };
  // Poll interval: the keeper looks every 5 s, a rewrite of a few hundred MB takes seconds.
  const quiet = await pollUntil("no AOF rewrite due or running", 90_000, 250, async () => {
    const s = await aofNow(redis);
    return !s.busy && aofDecision(s, rule, true) === "not-due" ? true : null;
  }).catch(() => false);
  return quiet ? (performance.now() - t0) / 1000 : null;
}

/** The PING probe's figures (its PINGs from bench/recall-client.mts). */
type PingStats = { pings: number; p50Ms: number | null; p99Ms: number | null; maxMs: number | null };

/** What the load sink answers to `stats` (bench/load-sink-server.mts; a type only: the server is a child process). */
type SinkAnswer = { messages: Record<string, MessageStats> };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms)); // pacing of the recall ticks and of the feeder
const mbOf = (bytes: number) => round1(bytes / 1024 / 1024);
const percentile = (sorted: number[], p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)]! : null);

function expect(what: string, r: { status: number; body: unknown }, status: number) {
  if (r.status !== status) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
}

/** A small CSV audience of `n` generated addresses at `domain`. */
async function smallAudience(a: Api, name: string, n: number, domain: string): Promise<void> {
  const csv = "email,name\n" + Array.from({ length: n }, (_, i) => `${name}${String(i).padStart(6, "0")}@${domain},R ${i}\n`).join("");
  const r = await a.call("author", "POST", `/api/audiences?name=${name}`, csv, "text/csv");
  expect(`import of ${name}`, r, 201);
}

/** Submits to `audience` and gives every approval it needs; `approve: false` leaves it pending. */
async function submit(a: Api, audience: string, subject: string, o: { holdMinutes?: number; approve?: boolean } = {}): Promise<string> {
  const m = await a.call("author", "POST", "/api/messages", { subject, text: MAIL.text, html: MAIL.html, audience: { lists: [audience] }, ...(o.holdMinutes ? { holdMinutes: o.holdMinutes } : {}) });
  expect(`submit to ${audience}`, m, 201);
  if (o.approve !== false) {
    for (const who of (["approver1", "approver2"] as const).slice(0, m.body.requiredApprovals)) expect("approve", await a.call(who, "POST", `/api/messages/${m.body.id}/approve`, { revision: 1 }), 200);
  }
  return String(m.body.id);
}

async function fields(redis: Redis, id: string) {
  const [state, sent, inflight, releasedAt, finishAt] = await redis.hmget(keys.message(id), "state", "sent", "inflight", "releasedAt", "finishAt");
  return { state: state ?? "", sent: Number(sent ?? 0), inflight: Number(inflight ?? 0), releasedAt: Number(releasedAt ?? 0), finishAt: Number(finishAt ?? 0) };
}

/** A fan-out of `audience` from submit to its last recipient; the rate from the instants the scripts store. */
async function fanout(a: Api, redis: Redis, audience: string, n: number, subject: string): Promise<{ id: string; rcptPerSec: number; seconds: number }> {
  const id = await submit(a, audience, subject);
  const done = await pollUntil(`message ${id} sent`, 600_000, 100, async () => {
    const f = await fields(redis, id);
    if (f.state === "sent") return f;
    if (f.state !== "scheduled" && f.state !== "sending") throw new Error(`message ${id} ended ${f.state}`);
    return null;
  });
  if (done.sent !== n) throw new Error(`message ${id}: ${done.sent} sent of ${n}`);
  const ms = done.finishAt - done.releasedAt;
  return { id, rcptPerSec: (n * 1000) / ms, seconds: ms / 1000 };
}

/** The event-loop delay prom-client measured in the service's API process since the last read (it resets at each). */
async function apiLoopDelay(url: string): Promise<{ p99: number | null; max: number | null }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const ms = (name: string) => {
    const line = text.split("\n").find((l) => l.startsWith(`airlock_nodejs_eventloop_lag_${name}_seconds`));
    return line ? round1(Number(line.slice(line.lastIndexOf(" ") + 1)) * 1000) : null;
  };
  return { p99: ms("p99"), max: ms("max") };
}

export async function runRecallUnderLoad(o: RecallUnderLoadOptions): Promise<RecallUnderLoadResult> {
  const N = o.recipients;
  const SSE = o.sseClients ?? 100;
  const EDITS = o.edits ?? 20;
  const EVERY = o.recallEveryMs ?? 500;
  const SLOW_N = o.slowRecipients ?? 900;
  const SLOW_MS = o.slowMs ?? 250;
  const log = o.log ?? (() => {});
  const redis = o.redis;

  const sink = await startHelper<{ port: number }>("./load-sink-server.mts", ["--slow-domain", "slow.example", "--slow-ms", String(SLOW_MS)]);
  const helpers: Array<HelperProcess<unknown>> = [sink];
  let svc: RunningService | null = null;
  const evidence = await watchRedis(redis, 1000);
  try {
    svc = await o.startService(`smtp://127.0.0.1:${sink.ready.port}`);
    const a = apiOf(svc.url);
    const dashboards = async (slow: boolean) => {
      const h = await startHelper<{ connected: number }>("./sse-clients.mts", ["--url", svc!.url, "--token", benchToken("ops"), "--count", String(SSE), ...(slow ? ["--slow"] : [])]);
      helpers.push(h);
      return h;
    };

    log(`recall-under-load: importing rul-big (${N}), rul-slow (${SLOW_N} at the slow domain), rul-small`);
    await importAudience(a, "rul-big", N);
    await smallAudience(a, "rul-slow", SLOW_N, "slow.example");
    await smallAudience(a, "rul-small", 10, "small.example");
    const pending = await submit(a, "rul-big", "To be edited while pending", { approve: false });
    const scheduled: string[] = [];
    for (let i = 0; i < (o.scheduledMessages ?? 60); i++) scheduled.push(await submit(a, "rul-small", `Scheduled ${i}`, { holdMinutes: 60 }));

    // The same fan-out alone, then with the dashboards connected: A B B A, so a drift of the machine's load cancels.
    // Rates move with other tenants' load; the service's CPU seconds per fan-out much less: both are kept.
    const alone: number[] = [];
    const withDashboards: number[] = [];
    const cpuAlone: number[] = [];
    const cpuWithDashboards: number[] = [];
    const serviceCpu = () => svc!.pids.reduce((n, p) => n + cpuSeconds(p), 0);
    const measure = async (into: number[], label: string) => {
      const c0 = serviceCpu();
      const f = await fanout(a, redis, "rul-big", N, `Alone ${label}`);
      into.push(f.rcptPerSec);
      (into === alone ? cpuAlone : cpuWithDashboards).push(serviceCpu() - c0);
      log(`recall-under-load: fan-out ${label}: ${Math.round(f.rcptPerSec)} recipients/s, service ${round1(serviceCpu() - c0)} CPU s`);
    };
    // One untimed fan-out first: a process's first fan-out of N warms its JIT and Redis's memory. Without
    // it the first "alone" was the slowest of the four in every run of session 26 (89,000-127,000/s
    // against 120,000-162,000/s for the fourth), which understated the rate alone.
    const warmUp = await fanout(a, redis, "rul-big", N, "Warm-up");
    log(`recall-under-load: fan-out warm-up (untimed): ${Math.round(warmUp.rcptPerSec)} recipients/s`);
    await measure(alone, "alone 1");
    let sse = await dashboards(false);
    await measure(withDashboards, `with ${SSE} dashboards 1`);
    if (o.sseRepeats === 2) {
      await measure(withDashboards, `with ${SSE} dashboards 2`);
      await sse.close();
      await measure(alone, "alone 2");
    } else await sse.close();
    sse = await dashboards(true);
    const recaller = await startHelper<{ ready: true }>("./recall-client.mts", ["--url", svc.url, "--token", benchToken("ops"), "--redis", o.redisUrl, "--redis-pid", String(o.redisPid)]);
    helpers.push(recaller);
    // One untimed recall first: a process's first recall compiles its code path (~90 ms on an idle
    // service here, 4-10 ms after), which is start-up, not load.
    const warm = await recaller.ask<{ status: number }>("recall", { id: scheduled.shift()! });
    if (warm.status !== 200) throw new Error(`the warm-up recall answered ${warm.status}`);

    const waitedBeforeSeconds = await quietAof(redis);
    const aof0 = await aofNow(redis);
    log(`recall-under-load: AOF base ${mbOf(aof0.baseSize)} MB, size ${mbOf(aof0.currentSize)} MB (${waitedBeforeSeconds === null ? "a due rewrite did not happen within 90 s" : `waited ${round1(waitedBeforeSeconds)} s for a due rewrite`})`);

    // The window: everything at once.
    log(`recall-under-load: window: upload ${N}, submit ${N}, ${EDITS} edits of ${N}, fan-out ${N}, ${SSE} dashboards, a recall every ${EVERY} ms`);
    await evidence.reset();
    await apiLoopDelay(svc.url); // read once to reset: the next read covers the window
    await recaller.ask("probe-start");
    const loop = monitorEventLoopDelay({ resolution: 10 });
    loop.enable();
    const pids = { service: svc.pids, redis: [o.redisPid], sink: [sink.pid], dashboards: [sse.pid], driver: [process.pid], recaller: [recaller.pid] };
    const cpu0 = Object.fromEntries(Object.entries(pids).map(([k, ps]) => [k, ps.reduce((s, p) => s + cpuSeconds(p), 0)]));
    const t0 = performance.now();
    const timed = async <T>(p: () => Promise<T>) => {
      const s = performance.now();
      const v = await p();
      return { v, seconds: (performance.now() - s) / 1000 };
    };
    const editTimes: number[] = [];
    const loads = Promise.all([
      timed(() => importAudience(a, "rul-upload", N)),
      timed(() => submit(a, "rul-big", "Another large message", { approve: false })),
      timed(async () => {
        for (let k = 1; k <= EDITS; k++) {
          const s = performance.now();
          // Every other edit also names an address (one already in the list, so the count stays within
          // the million allowed): the audience changes each time, so each edit freezes again.
          const audience = { lists: ["rul-big"], ...(k % 2 === 1 ? { addresses: [address(0)] } : {}) };
          const r = await a.call("author", "PUT", `/api/messages/${pending}`, { subject: `Edited ${k}`, text: MAIL.text, html: MAIL.html, audience });
          expect(`edit ${k}`, r, 200);
          editTimes.push((performance.now() - s) / 1000);
        }
      }),
      timed(() => fanout(a, redis, "rul-big", N, "Large fan-out under load")),
    ]);
    let loadsDone = false;
    void loads.then(() => (loadsDone = true), () => (loadsDone = true));

    // Small sending messages, kept two in preparation: each is ready once its fan-out is under way.
    const ready: string[] = [];
    let preparing = 0;
    let active = true;
    const feederErrors: string[] = [];
    const feeder = (async () => {
      let n = 0;
      while (active) {
        if (preparing + ready.length >= 2) {
          await sleep(20);
          continue;
        }
        preparing++;
        const subject = `Sending slowly ${++n}`;
        void (async () => {
          const id = await submit(a, "rul-slow", subject);
          // Ready once its fan-out began, or after a second released: its batches may wait behind
          // the large fan-out's in the queue (all of a message's batches are queued at its release).
          let releasedAt = 0;
          await pollUntil(`message ${id} sending`, 120_000, 20, async () => {
            const f = await fields(redis, id);
            if (f.state === "sending") releasedAt ||= Date.now();
            if (f.state === "sending" && (f.sent + f.inflight > 0 || Date.now() - releasedAt >= 1000)) return f;
            if (f.state !== "scheduled" && f.state !== "sending") throw new Error(`message ${id} is ${f.state} before its recall`);
            return null;
          });
          ready.push(id);
        })()
          .catch((e: Error) => feederErrors.push(e.message))
          .finally(() => preparing--);
      }
    })();

    const recalls: Array<Promise<Omit<RecallRecord, "stopMs" | "drainMs" | "sentAfterAck" | "startedBefore" | "finishedBefore"> & { sentAt: number }>> = [];
    let missedTicks = 0;
    const minRecalls = o.minRecalls ?? 10;
    let doneAtTick = 0;
    for (let k = 1; ; k++) {
      await sleep(Math.max(0, t0 + k * EVERY - performance.now()));
      if (loadsDone && !doneAtTick) doneAtTick = k;
      // After the load, up to 60 more ticks for the minimum (the small messages may have run out).
      if (loadsDone && (recalls.length >= minRecalls || k - doneAtTick > 60)) break;
      const sending = ready.shift();
      const id = sending ?? scheduled.shift();
      if (!id) {
        missedTicks++;
        continue;
      }
      // Not awaited: a slow answer must not delay the next tick.
      recalls.push(
        (async () => {
          const r = await recaller.ask<{ status: number; ms: number; delivered: number; sentAt: number }>("recall", { id });
          return { id, kind: sending ? ("sending" as const) : ("scheduled" as const), status: r.status, ms: r.ms, delivered: r.delivered, sentAt: r.sentAt };
        })(),
      );
    }
    active = false;
    const [upload, submitB, edits, fan] = await loads;
    const answered = await Promise.all(recalls);
    await feeder;
    const windowSeconds = (performance.now() - t0) / 1000;
    loop.disable();
    const apiLoop = await apiLoopDelay(svc.url);
    const probed = await recaller.ask<{ pings: number[]; cpuWait: RunQueueWaits | null }>("probe-stop");
    const pings = probed.pings.sort((x, y) => x - y);
    const pingMs = (p: number) => (pings.length ? round1(percentile(pings, p)!) : null);
    const cpu = Object.fromEntries(Object.entries(pids).map(([k, ps]) => [k, round1(ps.reduce((s, p) => s + cpuSeconds(p), 0) - cpu0[k]!)]));
    const redisEvidence = await evidence.collect();
    const aof1 = await aofNow(redis);
    // Rewrites begun in the window (one only scheduled at its end included).
    const aof: AofEvidence = { baseMbAtStart: mbOf(aof0.baseSize), sizeMbAtStart: mbOf(aof0.currentSize), sizeMbAtEnd: mbOf(aof1.currentSize), rewritesInWindow: aof1.rewrites - aof0.rewrites + (aof1.scheduledOnly ? 1 : 0), waitedBeforeSeconds: waitedBeforeSeconds === null ? null : round1(waitedBeforeSeconds) };
    if (feederErrors.length) log(`recall-under-load: feeder: ${feederErrors.slice(0, 3).join("; ")}`);

    // Every recalled message settled (its last slow transaction answered, its correction sent) before the sink is read.
    for (const r of answered) {
      await pollUntil(`message ${r.id} quiet`, 120_000, 50, async () => {
        const [state, inflight, correctionInflight] = await redis.hmget(keys.message(r.id), "state", "inflight", "correctionInflight");
        return state !== "sending" && state !== "correcting" && Number(inflight ?? 0) === 0 && Number(correctionInflight ?? 0) === 0 ? true : null;
      });
    }
    const dashboardStats = await sse.ask<{ readers: { open: number; minFrames: number } }>("stats");
    const slowClient = await floodSlowClient({ redis, sse, service: svc });
    const atSink = (await sink.ask<SinkAnswer>("stats")).messages;

    const list: RecallRecord[] = answered.map(({ sentAt, ...r }) => {
      const s = atSink[r.id];
      const got = s ? (s.distinct ?? s.recipients) : 0;
      return {
        ...r,
        ms: round1(r.ms),
        stopMs: r.kind === "sending" ? (s ? Math.max(0, s.lastHandoffAt - sentAt) : 0) : null,
        drainMs: r.kind === "sending" ? (s ? Math.max(0, s.lastEndAt - sentAt) : 0) : null,
        sentAfterAck: Math.max(0, got - r.delivered),
        startedBefore: !!s && s.firstHandoffAt < sentAt,
        finishedBefore: !!s && s.recipients >= SLOW_N && s.lastHandoffAt < sentAt,
      };
    });
    const ms = list.filter((r) => r.status === 200).map((r) => r.ms).sort((x, y) => x - y);
    const stops = list.flatMap((r) => (r.stopMs === null ? [] : [r.stopMs]));
    return {
      p50Ms: percentile(ms, 0.5),
      p99Ms: percentile(ms, 0.99),
      maxMs: ms.length ? ms[ms.length - 1]! : null,
      stopMsMax: stops.length ? Math.max(...stops) : null,
      sentAfterAck: list.reduce((n, r) => n + r.sentAfterAck, 0),
      duplicates: list.reduce((n, r) => n + (atSink[r.id]?.duplicates ?? 0), 0),
      slowestRedisMs: redisEvidence.slowest[0]?.ms ?? null,
      slowestRedisCommands: redisEvidence.slowest.slice(0, 5).map((c) => ({ ms: c.ms, command: c.command })),
      fanoutRateRatio: Math.round((fan.v.rcptPerSec / mean(alone)) * 100) / 100,
      sseCostPercent: round1((1 - mean(withDashboards) / mean(alone)) * 100),
      sseCostCpuPercent: round1((mean(cpuWithDashboards) / mean(cpuAlone) - 1) * 100),
      recalls: {
        total: list.length,
        scheduled: list.filter((r) => r.kind === "scheduled").length,
        sending: list.filter((r) => r.kind === "sending").length,
        sendingStarted: list.filter((r) => r.startedBefore).length,
        errors: list.filter((r) => r.status !== 200).length,
        missedTicks,
        finishedBefore: list.filter((r) => r.finishedBefore).length,
      },
      recipients: N,
      fanout: { aloneRcptPerSec: alone.map(Math.round), withDashboardsRcptPerSec: withDashboards.map(Math.round), serviceCpuSecondsAlone: cpuAlone.map(round1), serviceCpuSecondsWithDashboards: cpuWithDashboards.map(round1), underLoadRcptPerSec: Math.round(fan.v.rcptPerSec), underLoadSeconds: round1(fan.v.seconds) },
      load: {
        windowSeconds: round1(windowSeconds),
        uploadSeconds: round1(upload.seconds),
        submitSeconds: round1(submitB.seconds),
        editsSeconds: round1(edits.seconds),
        editMaxSeconds: round1(Math.max(0, ...editTimes)),
        edits: editTimes.length,
        dashboards: SSE,
        dashboardFramesMin: dashboardStats.readers.minFrames,
        dashboardsOpenAtEnd: dashboardStats.readers.open,
      },
      slowClient,
      driverLoopDelayMs: { p99: round1(loop.percentile(99) / 1e6), max: round1(loop.max / 1e6) },
      apiLoopDelayMs: apiLoop,
      redisPing: { pings: pings.length, p50Ms: pingMs(0.5), p99Ms: pingMs(0.99), maxMs: pingMs(1) },
      redisCpuWait: probed.cpuWait,
      cpuSecondsInWindow: cpu,
      servicePeakRssMb: round1(Math.max(...svc.peakRss()) / 1024 / 1024),
      redis: redisEvidence,
      aof,
      recallList: list,
    };
  } finally {
    await evidence.restore().catch(() => {});
    // The dashboards first (the service closes no stream by itself), the sink last (the service may still send).
    for (const h of helpers.slice(1)) await h.close();
    await svc?.stop();
    await sink.close();
  }
}
