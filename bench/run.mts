/**
 * `npm run bench [-- --recipients N | --quick] [--pool 5] [--sink auto|postfix|node] [--profile]`
 *
 * One run, one machine: a baseline (plain pooled nodemailer loop) and the real Airlock (service
 * in child processes, its own redis-server, an SMTP sink) measured back to back, so the ratios
 * compare like with like. Prints a table and writes bench/results/latest.json.
 */
import { cpus, freemem, loadavg, setPriority, totalmem } from "node:os";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { startRedisProcess } from "../src/infra/redis-process.js";
import { api, importAudience, runBaseline, runFanout, runRecallRace, type FanoutResult, type RecallResult } from "./phases.js";
import { cpuSeconds, startService, type ServiceOptions } from "./service.js";
import { startSink } from "./sink.js";
import { runDirectoryPhase, type DirectoryResult } from "./directory.js";
import { runCappedPair } from "./capped-workers.js";
import { mean } from "./numbers.js";
import { runRecallUnderLoad } from "./recall-under-load.js";
import { runStagedPhase, type StagedResult } from "./staged.js";

const { values: args } = parseArgs({
  options: {
    recipients: { type: "string" },
    quick: { type: "boolean", default: false },
    pool: { type: "string", default: "5" },
    sink: { type: "string", default: "auto" },
    baseline: { type: "string" },
    "per-recipient": { type: "string" },
    "skip-two-workers": { type: "boolean", default: false },
    /** Comma list of phases to run (baseline is always run): per-recipient, two-workers-per-recipient, batched, two-workers, recall, directory, two-workers-capped, recall-under-load, staged. */
    only: { type: "string" },
    profile: { type: "boolean", default: false },
    /** Cap each service process at this many CPUs (cgroup CFS quota; see bench/cpu-cap.ts). */
    "service-cpus": { type: "string" },
    /**
     * Redis's main thread at this nice value (-20..19, default 0: as every other process). A
     * negative value models Redis with a core of its own, as in production, where it does not share
     * the workers' and the API's cores: on this 2-core machine Redis otherwise waits for a core for
     * 10-40 ms at a time under load, inside commands (recallUnderLoad.redisCpuWait). A negative
     * value is written with "=": `--redis-nice=-10`.
     */
    "redis-nice": { type: "string", default: "0" },
    /** Each large audience of recall-under-load (default 1,000,000; with --quick, the recipients). */
    "load-recipients": { type: "string" },
    /** The staged send's audience (default: the recipients; with --quick, 10,000 at most). */
    "staged-recipients": { type: "string" },
    /** Who rewrites Redis's AOF in the run: when-quiet (Airlock, the default), redis (Redis's own rule) or off (see below). */
    "aof-rewrite": { type: "string", default: "when-quiet" },
    out: { type: "string", default: new URL("./results/latest.json", import.meta.url).pathname },
  },
});

const N = Number(args.recipients ?? (args.quick ? 20_000 : 100_000));
const POOL = Number(args.pool);
// The baseline sends one message per recipient at ~600-2,000/s: 20,000 messages (3 slices) take 10-30 s.
const BASELINE_N = Number(args.baseline ?? Math.min(N, 20_000));
// Likewise per-recipient transactions: 100,000 is plenty for a rate; a million would take minutes.
const PER_RCPT_N = Number(args["per-recipient"] ?? Math.min(N, 100_000));
const LOAD_N = Number(args["load-recipients"] ?? (args.quick ? N : 1_000_000));
const STAGED_N = Number(args["staged-recipients"] ?? (args.quick ? Math.min(N, 10_000) : N));
const SERVICE_CPUS = args["service-cpus"] === undefined ? undefined : Number(args["service-cpus"]);
const REDIS_NICE = Number(args["redis-nice"]);
if (!(Number.isInteger(REDIS_NICE) && REDIS_NICE >= -20 && REDIS_NICE <= 19)) {
  process.stderr.write("--redis-nice: a whole number between -20 and 19 (a negative one as --redis-nice=-10)\n");
  process.exit(2);
}
if (SERVICE_CPUS !== undefined && !(SERVICE_CPUS >= 0.1 && SERVICE_CPUS <= 64)) {
  process.stderr.write("--service-cpus: a number of CPUs between 0.1 and 64\n");
  process.exit(2);
}
if (![N, POOL, BASELINE_N, PER_RCPT_N, LOAD_N, STAGED_N].every((n) => Number.isInteger(n) && n > 0) || !["auto", "postfix", "node"].includes(args.sink!) || !["when-quiet", "redis", "off"].includes(args["aof-rewrite"]!)) {
  process.stderr.write("usage: npm run bench -- [--recipients N | --quick] [--pool N] [--sink auto|postfix|node] [--baseline N] [--per-recipient N] [--staged-recipients N] [--skip-two-workers] [--only phases] [--profile] [--service-cpus F] [--redis-nice N] [--aof-rewrite when-quiet|redis|off] [--out file]\n");
  process.exit(2);
}

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);
const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;
const work = mkdtempSync(join(tmpdir(), "airlock-bench-"));
const profileDir = args.profile ? new URL("./results/profiles/", import.meta.url).pathname : undefined;
if (profileDir) mkdirSync(profileDir, { recursive: true });

const redisProc = await startRedisProcess({ dir: join(work, "redis") });
const redis = new Redis(redisProc.url);
const sink = await startSink({ prefer: args.sink as "auto" | "postfix" | "node" });
const serverInfo = await redis.info("server");
const redisVersion = /^redis_version:(\S+)/m.exec(serverInfo)?.[1] ?? "?";
const redisPid = Number(/^process_id:(\d+)/m.exec(serverInfo)?.[1] ?? 0);
// Who rewrites Redis's AOF. A rewrite forks Redis, and the copy-on-write faults after the fork stall
// it for 50-170 ms on this machine (docs/performance-history.md, sessions 24-25). when-quiet (the
// default, as production): the services' workers run it while no send runs and Redis takes few
// writes (infra/aof-rewrite.ts);
// redis: Redis by its own rule, during sends too (as before session 25); off: never in the run.
const AOF_REWRITE = args["aof-rewrite"] as "when-quiet" | "redis" | "off";
if (AOF_REWRITE === "off") await redis.config("SET", "auto-aof-rewrite-percentage", "0");
// Every service process of the run inherits it (bench/service.ts passes process.env on).
if (AOF_REWRITE === "redis") process.env.REDIS_AOF_REWRITE = "redis";
const machine = {
  cpus: cpus().length,
  cpuModel: cpus()[0]?.model ?? "?",
  memTotalMb: mb(totalmem()),
  memFreeMbAtStart: mb(freemem()),
  loadavgAtStart: loadavg().map((l) => Math.round(l * 100) / 100),
  node: process.version,
  redis: redisVersion,
  sink: sink.kind,
  smtpConnections: POOL,
  /** Each service process capped at this many CPUs (null: uncapped). */
  serviceCpus: SERVICE_CPUS ?? null,
  /** Who rewrote Redis's AOF (--aof-rewrite): when-quiet, redis or off. */
  aofRewrite: AOF_REWRITE,
  /** Redis's main thread's nice value (--redis-nice; 0: as every other process). */
  redisNice: REDIS_NICE,
};
log(`machine ${JSON.stringify(machine)}`);

interface PhaseRow {
  phase: string;
  recipients: number;
  seconds: number;
  rcptPerSec: number;
  ratio: number | null;
  peakRssMb: number[] | null;
}
const rows: PhaseRow[] = [];
const cpuByPhase: Record<string, unknown> = {};

try {
  if (REDIS_NICE !== 0) {
    // Inside the try, so that a refusal (not root: no lowering of a nice value) stops Redis and the sink too.
    if (!(redisPid > 0)) throw new Error("--redis-nice: Redis did not say its process id");
    // The main thread only (on Linux a pid names its main thread here): every command runs there. A
    // fork for the AOF rewrite inherits it; Redis's background threads, started before, do not.
    try {
      setPriority(redisPid, REDIS_NICE);
    } catch (e) {
      throw new Error(`--redis-nice=${REDIS_NICE}: refused (${(e as Error).message}); a value below 0 needs root or CAP_SYS_NICE`);
    }
  }
  // Three slices, the median rate: the baseline is every ratio's denominator, and the machine is shared.
  log(`baseline: ${BASELINE_N} messages in 3 slices, plain nodemailer pool of ${POOL}`);
  const slices = [];
  for (let i = 0; i < 3; i++) slices.push(await runBaseline({ smtpUrl: sink.url, pool: POOL, count: Math.ceil(BASELINE_N / 3) }));
  const baseline = [...slices].sort((a, b) => a.rcptPerSec - b.rcptPerSec)[1]!;
  log(`baseline slices: ${slices.map((x) => Math.round(x.rcptPerSec)).join(", ")} messages/s`);
  rows.push({ phase: "baseline: nodemailer loop, built per message (median of 3)", recipients: baseline.messages, seconds: baseline.ms / 1000, rcptPerSec: baseline.rcptPerSec, ratio: 1, peakRssMb: null });

  const service = async (name: string, o: Partial<ServiceOptions> & { recipientsPerTransaction: number }, smtpUrl = sink.url) =>
    startService({ dir: join(work, name), redisUrl: redisProc.url, smtpUrl, poolSize: POOL, profileDir: profileDir && join(profileDir, name), cpus: SERVICE_CPUS, ...o });

  const only = new Set((args.only ?? "per-recipient,two-workers-per-recipient,batched,two-workers,recall,directory,two-workers-capped,recall-under-load,staged").split(","));
  if (args["skip-two-workers"]) ["two-workers", "two-workers-per-recipient"].forEach((k) => only.delete(k));
  // The audiences are imported first, through a service process of their own, so that each fan-out
  // phase's peak RSS is the fan-out's (the import's is reported apart).
  const sampleAudience = PER_RCPT_N === N ? "bench-all" : "bench-sample";
  const audiences = new Map<string, number>([["bench-all", N]]);
  if (only.has("per-recipient") || only.has("two-workers-per-recipient")) audiences.set(sampleAudience, PER_RCPT_N);
  if (only.has("two-workers-capped")) audiences.set("bench-warm", Math.min(N, 20_000));
  const stagedAudience = STAGED_N === N ? "bench-all" : "bench-staged";
  if (only.has("staged")) audiences.set(stagedAudience, STAGED_N);
  const importer = await service("import", { recipientsPerTransaction: 50 });
  let importPeak: number;
  const importMs: Record<string, number> = {};
  try {
    for (const [name, n] of audiences) {
      const t = await importAudience(api(importer.url), name, n);
      importMs[name] = Math.round(t.ms);
      log(`imported ${n} recipients as ${name} in ${Math.round(t.ms)} ms`);
    }
    importPeak = importer.peakRss()[0]!;
    rows.push({ phase: "import: CSV upload through the API (streamed)", recipients: N, seconds: importMs["bench-all"]! / 1000, rcptPerSec: N / (importMs["bench-all"]! / 1000), ratio: null, peakRssMb: [mb(importPeak)] });
  } finally {
    await importer.stop();
  }

  // Resolving and freezing a directory group of N members, in a service process of its own (its
  // peak RSS next to the import's above); skipped where slapd is not installed.
  let directory: { result: DirectoryResult; peakRss: number } | null = null;
  if (only.has("directory")) {
    if (!existsSync("/usr/sbin/slapd")) log("directory: skipped (no /usr/sbin/slapd: apt-get install slapd ldap-utils)");
    else {
      log(`directory: a group of ${N} members in slapd, resolved and frozen at submit`);
      directory = await runDirectoryPhase({
        dir: join(work, "directory-ldif"),
        n: N,
        start: async (env) => {
          const svc = await service("directory", { recipientsPerTransaction: 50, env });
          return { api: api(svc.url), stop: () => svc.stop(), peakRss: () => svc.peakRss() };
        },
      });
      log(`directory: ${JSON.stringify({ ...directory.result, peakRssAfterDefine: mb(directory.result.peakRssAfterDefine) })}`);
      rows.push({
        phase: "directory: resolve + freeze at submit (paged LDAP, streamed)",
        recipients: directory.result.recipients,
        seconds: directory.result.submitMs / 1000,
        rcptPerSec: directory.result.recipients / (directory.result.submitMs / 1000),
        ratio: null,
        peakRssMb: [mb(directory.peakRss)],
      });
    }
  }

  const fanoutPhase = async (key: string, label: string, rpt: number, audience: string, n: number, extraWorkers = 0): Promise<{ r: FanoutResult; peak: number[] } | null> => {
    if (!only.has(key)) return null;
    const svc = await service(key, { recipientsPerTransaction: rpt, extraWorkers });
    try {
      log(`${label}: ${n} recipients`);
      // CPU used during the fan-out by each party: where the two cores went.
      const cpu = () => ({ service: svc.pids.map(cpuSeconds), redis: cpuSeconds(redisPid), sink: cpuSeconds(sink.pid), driver: process.cpuUsage() });
      const c0 = cpu();
      await redis.config("RESETSTAT");
      const r = await runFanout({ api: api(svc.url), redis, sink, audience, recipients: n });
      const c1 = cpu();
      const peak = svc.peakRss();
      const used = {
        service: c1.service.map((x, i) => round2(x - c0.service[i]!)),
        redis: round2(c1.redis - c0.redis),
        sink: round2(c1.sink - c0.sink),
        driver: round2((c1.driver.user + c1.driver.system - c0.driver.user - c0.driver.system) / 1e6),
      };
      const redisCommands = topCommands(await redis.info("commandstats"));
      cpuByPhase[key] = { ...used, wallSeconds: round2(r.ms / 1000), redisCommands };
      log(`${label}: Redis time by command (ms): ${redisCommands.map((c) => `${c.command} ${c.ms} (${c.calls} calls)`).join(", ")}`);
      log(`${label}: ${Math.round(r.rcptPerSec)} recipients/s, peak RSS ${peak.map(mb).join(" + ")} MB, CPU seconds ${JSON.stringify(used)} (submit to finish)`);
      rows.push({ phase: label, recipients: n, seconds: r.ms / 1000, rcptPerSec: r.rcptPerSec, ratio: r.rcptPerSec / baseline.rcptPerSec, peakRssMb: peak.map(mb) });
      return { r, peak };
    } finally {
      await svc.stop();
    }
  };

  const perRecipient = await fanoutPhase("per-recipient", "airlock: 1 recipient per transaction", 1, sampleAudience, PER_RCPT_N);
  const twoPerRecipient = await fanoutPhase("two-workers-per-recipient", "airlock: 1 per transaction, 2 worker processes", 1, sampleAudience, PER_RCPT_N, 1);
  const batched = await fanoutPhase("batched", "airlock: 50 recipients per transaction", 50, "bench-all", N);
  const two = await fanoutPhase("two-workers", "airlock: 50 per transaction, 2 worker processes", 50, "bench-all", N, 1);

  let recall: RecallResult | null = null;
  let recallPeak: number[] = [];
  if (only.has("recall")) {
    // The recall race needs to know who got the original: a recording sink of its own.
    const recSink = await startSink({ prefer: "node", record: true });
    try {
      const svc = await service("recall", { recipientsPerTransaction: 50 }, recSink.url);
      try {
        log(`recall race: ${N} recipients, recall at 50%`);
        recall = await runRecallRace({ api: api(svc.url), redis, sink: recSink, audience: "bench-all", recipients: N });
        recallPeak = svc.peakRss();
        log(`recall race: ${JSON.stringify(recall)}`);
      } finally {
        await svc.stop();
      }
    } finally {
      await recSink.close();
    }
    rows.push({ phase: "correction fan-out after the recall (node sink)", recipients: recall.corrected, seconds: recall.corrected / recall.correctionRcptPerSec, rcptPerSec: recall.correctionRcptPerSec, ratio: null, peakRssMb: recallPeak.map(mb) });
  }

  // Issue 18: two processes against one, each capped at half a core; then recall under load.
  const capped = !only.has("two-workers-capped") ? null : await runCappedPair({
    cpus: 0.5,
    start: (name, extraWorkers) => service(name, { recipientsPerTransaction: 50, extraWorkers, cpus: 0.5 }),
    warmUp: (svc) => runFanout({ api: api(svc.url), redis, sink, audience: "bench-warm", recipients: audiences.get("bench-warm")! }),
    fanout: (svc) => runFanout({ api: api(svc.url), redis, sink, audience: "bench-all", recipients: N }),
    log,
  });
  if (capped) for (const [n, r] of [[1, capped.oneRcptPerSec], [2, capped.twoRcptPerSec]] as const) rows.push({ phase: `airlock: 50 per transaction, ${n} process${n > 1 ? "es" : ""} capped at 0.5 CPU each`, recipients: capped.recipients, seconds: capped.recipients / r, rcptPerSec: r, ratio: r / baseline.rcptPerSec, peakRssMb: null });
  const underLoad = !only.has("recall-under-load") ? null : await runRecallUnderLoad({
    startService: (smtpUrl) => service("recall-under-load", { recipientsPerTransaction: 50, apiApart: true }, smtpUrl),
    redis,
    redisUrl: redisProc.url,
    redisPid,
    recipients: LOAD_N,
    scheduledMessages: args.quick ? 30 : 150,
    sseRepeats: args.quick ? 1 : 2,
    log,
  });
  if (underLoad) {
    const f = underLoad.fanout;
    log(`recall under load: p50 ${underLoad.p50Ms} ms, p99 ${underLoad.p99Ms} ms, max ${underLoad.maxMs} ms, stop ${underLoad.stopMsMax} ms, sentAfterAck ${underLoad.sentAfterAck}, slowest Redis ${underLoad.slowestRedisMs} ms (${underLoad.slowestRedisCommands.map((c) => `${c.command} ${c.ms}`).join(", ")})`);
    const w = underLoad.redisCpuWait;
    if (w) log(`recall under load: Redis waited for a core ${w.ms} ms in the window, at most ${w.longestSlotMs} ms of a 50 ms slot, more than 10 ms in ${w.slotsOver10Ms} of ${w.slots} slots`);
    const alone = mean(f.aloneRcptPerSec);
    rows.push({ phase: "recall-under-load: the fan-out alone (mean)", recipients: LOAD_N, seconds: LOAD_N / alone, rcptPerSec: alone, ratio: null, peakRssMb: null });
    rows.push({ phase: "recall-under-load: the fan-out under load", recipients: LOAD_N, seconds: f.underLoadSeconds, rcptPerSec: f.underLoadRcptPerSec, ratio: null, peakRssMb: [underLoad.servicePeakRssMb] });
  }

  // Issue 16: a staged send halted by replies in the wait after the canary, then continued; a
  // recording sink of its own (its counts while halted, the early mail's Reply-To).
  let staged: StagedResult | null = null;
  if (only.has("staged")) {
    const recSink = await startSink({ prefer: "node", record: true });
    try {
      log(`staged: ${STAGED_N} recipients, halted by 3 human replies during the wait, then continued`);
      staged = await runStagedPhase({ startService: (env) => service("staged", { recipientsPerTransaction: 50, env }, recSink.url), redis, sink: recSink, audience: stagedAudience, recipients: STAGED_N, log });
      log(`staged: ${JSON.stringify(staged)}`);
    } finally {
      await recSink.close();
    }
    rows.push({ phase: "staged: the rest after the continue (node sink)", recipients: STAGED_N - staged.seed - staged.canary, seconds: (STAGED_N - staged.seed - staged.canary) / staged.restRcptPerSec, rcptPerSec: staged.restRcptPerSec, ratio: null, peakRssMb: null });
    rows.push({ phase: "staged: the same audience all at once (node sink)", recipients: STAGED_N, seconds: STAGED_N / staged.unstagedRcptPerSec, rcptPerSec: staged.unstagedRcptPerSec, ratio: null, peakRssMb: null });
  }

  const rate = (x: { r: FanoutResult } | null) => (x ? Math.round(x.r.rcptPerSec) : null);
  const ratio = (x: { r: FanoutResult } | null, to: number | undefined) => (x && to ? round2(x.r.rcptPerSec / to) : null);
  const singlePeaks = [importPeak, perRecipient?.peak[0], batched?.peak[0], recallPeak[0]].filter((x): x is number => x !== undefined);
  const result = {
    machine,
    recipients: N,
    baselineMessages: slices.reduce((n, x) => n + x.messages, 0),
    perRecipientRecipients: PER_RCPT_N,
    baselineRcptPerSec: Math.round(baseline.rcptPerSec),
    baselineSlicesRcptPerSec: slices.map((x) => Math.round(x.rcptPerSec)),
    importMs,
    /** The directory phase (null: not run): slapadd, define (first resolution), submit (resolution + commit + freeze), and the process's peak RSS. */
    directory: directory && { ...directory.result, peakRssAfterDefine: undefined, peakRssAfterDefineMb: mb(directory.result.peakRssAfterDefine), peakRssMb: mb(directory.peakRss) },
    airlockRcptPerSec: { perRecipient: rate(perRecipient), batched: rate(batched), perRecipientTwoWorkers: rate(twoPerRecipient), batchedTwoWorkers: rate(two) },
    ratioPerRecipient: ratio(perRecipient, baseline.rcptPerSec),
    ratioBatched: ratio(batched, baseline.rcptPerSec),
    /** Two worker processes (one of them also serving the API) against one, same mode. */
    ratioTwoWorkersToOne: { perRecipient: ratio(twoPerRecipient, perRecipient?.r.rcptPerSec), batched: ratio(two, batched?.r.rcptPerSec) },
    batchedSeconds: batched ? round2(batched.r.ms / 1000) : null,
    batchedSubmitToFinishSeconds: batched ? round2(batched.r.submitToFinishMs / 1000) : null,
    recall: recall && { sentAfterAck: recall.sentAfterAck, ackMs: recall.ackMs, stopMs: recall.stopMs, delivered: recall.delivered, corrected: recall.corrected, duplicates: recall.duplicates, correctionRcptPerSec: Math.round(recall.correctionRcptPerSec) },
    /** A single service process (API + workers): the highest of the import's and the one-process fan-outs'. */
    peakRssMb: singlePeaks.length ? mb(Math.max(...singlePeaks)) : null,
    peakRssMbByPhase: { import: mb(importPeak), directory: directory && mb(directory.peakRss), perRecipient: perRecipient && mb(perRecipient.peak[0]!), batched: batched && mb(batched.peak[0]!), twoWorkersPerRecipient: twoPerRecipient && twoPerRecipient.peak.map(mb), twoWorkers: two && two.peak.map(mb), recall: recallPeak.length ? mb(recallPeak[0]!) : null },
    redisBytesPerRecipient: batched?.r.redisBytesPerRecipient ?? null,
    /** Two worker processes against one, each capped at half a core (null: not run, or no cgroup cap here). */
    ratioTwoWorkersCapped: capped?.ratio ?? null,
    twoWorkersCapped: capped,
    recallUnderLoad: underLoad,
    sseCostPercent: underLoad?.sseCostPercent ?? null,
    /** Issue 16: a staged send (bench/staged.ts: what each figure measures). */
    staged: staged && { recipients: staged.recipients, seed: staged.seed, canary: staged.canary, planMs: staged.planMs, canaryMs: staged.canaryMs, haltMs: staged.haltMs, haltAfterDataMs: staged.haltAfterDataMs, sentWhileHalted: staged.sentWhileHalted, restRateRatio: staged.restRateRatio, restRcptPerSec: staged.restRcptPerSec, unstagedRcptPerSec: staged.unstagedRcptPerSec, unstagedRcptPerSecEach: staged.unstagedRcptPerSecEach, duplicates: staged.duplicates },
    /** CPU seconds per process from submit to the last recipient sent (the fan-out's wall seconds for scale). */
    cpuSecondsByPhase: cpuByPhase,
    loadavgAtEnd: loadavg().map((l) => Math.round(l * 100) / 100),
    at: new Date().toISOString(),
  };
  printTable(rows);
  process.stdout.write(JSON.stringify(result, null, 2) + "\n");
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  writeFileSync(args.out!, JSON.stringify(result, null, 2) + "\n");
  log(`wrote ${args.out}`);
} finally {
  redis.disconnect();
  await sink.close();
  await redisProc.stop();
  rmSync(work, { recursive: true, force: true });
}

/** Where Redis's time went during a phase: the commands with the most microseconds (INFO commandstats). */
function topCommands(info: string): { command: string; calls: number; ms: number }[] {
  const rows = [...info.matchAll(/^cmdstat_(\S+):calls=(\d+),usec=(\d+)/gm)].map((m) => ({ command: m[1]!, calls: Number(m[2]), ms: Math.round(Number(m[3]) / 1000) }));
  return rows.sort((a, b) => b.ms - a.ms).slice(0, 8);
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function printTable(r: PhaseRow[]): void {
  const head = ["phase", "recipients", "seconds", "rcpt/s", "× baseline", "peak RSS MB"];
  const body = r.map((x) => [x.phase, String(x.recipients), x.seconds.toFixed(2), String(Math.round(x.rcptPerSec)), x.ratio === null ? "" : x.ratio.toFixed(2), x.peakRssMb ? x.peakRssMb.join(" + ") : ""]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => "| " + cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" | ") + " |";
  process.stdout.write([line(head), "|" + widths.map((w, i) => (i === 0 ? "-" : "") + "-".repeat(w + 1) + (i === 0 ? "" : ":")).join("|") + "|", ...body.map(line)].join("\n") + "\n\n");
}
