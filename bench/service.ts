/**
 * Runs Airlock as child processes of the benchmark (`src/main.ts all|worker` under node + tsx's
 * loader, no tsx CLI in between), so that their memory is the service's alone: the peak RSS is the
 * kernel's high-water mark (`VmHWM` in /proc/<pid>/status), read just before the process stops.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../src/infra/redis-process.js";
import { capCpu } from "./cpu-cap.js";
import { round1 } from "./numbers.js";
import { stopChild } from "./sink.js";

const REPO = new URL("../", import.meta.url).pathname;

export const BENCH_USERS = {
  author: { email: "author@bench.example", name: "Bench Author", roles: ["author"] },
  approver1: { email: "approver1@bench.example", name: "Bench Approver One", roles: ["approver"] },
  approver2: { email: "approver2@bench.example", name: "Bench Approver Two", roles: ["approver"] },
  ops: { email: "ops@bench.example", name: "Bench Ops", roles: ["ops"] },
} as const;
export type BenchUser = keyof typeof BENCH_USERS;
export const benchToken = (u: BenchUser) => `bench-token-${u}-0123456789abcdef`;

export interface ServiceOptions {
  dir: string;
  redisUrl: string;
  smtpUrl: string;
  recipientsPerTransaction: number;
  poolSize: number;
  /** Extra worker-only processes next to the one that runs everything. */
  extraWorkers?: number;
  /**
   * The HTTP API in a process of its own (`main.ts api`) and the workers in another, as a deployment
   * that takes large uploads runs them: an upload's parsing then shares no event loop with a fan-out.
   */
  apiApart?: boolean;
  /** SEND_RATE_PER_SECOND; by default out of the way (10,000,000) so that the pipeline itself is measured. */
  sendRatePerSecond?: number;
  /** Write a V8 CPU profile per process into this directory (node --cpu-prof). */
  profileDir?: string;
  /** Cap each service process at this many CPUs (bench/cpu-cap.ts). */
  cpus?: number;
  /** More environment for every process (the directory phase's DIRECTORY_*). */
  env?: Record<string, string>;
}

export interface RunningService {
  url: string;
  pids: number[];
  /** Peak RSS (VmHWM) per process so far, in bytes. */
  peakRss(): number[];
  /** Current RSS (VmRSS) per process, in bytes. */
  rss(): number[];
  stop(): Promise<void>;
}

function statusField(pid: number, field: "VmHWM" | "VmRSS"): number {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0; // the process is gone
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat; 0 once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
  } catch {
    return 0;
  }
}

/**
 * Milliseconds the process's main thread has spent so far ready to run but waiting for a core
 * (the second field of /proc/<pid>/task/<pid>/schedstat, in ns); null where the kernel does not
 * tell. For Redis, whose commands all run on that thread, a command's time in the slow log includes
 * any such wait that fell inside it.
 */
export function runQueueWaitMs(pid: number): number | null {
  try {
    const wait = Number(readFileSync(`/proc/${pid}/task/${pid}/schedstat`, "utf8").split(" ")[1]);
    return Number.isFinite(wait) ? wait / 1e6 : null;
  } catch {
    return null;
  }
}

/** Redis's wait for a core over a stretch of time (bench/recall-client.mts reads it every 50 ms). */
export interface RunQueueWaits {
  /** In all, ms. */
  ms: number;
  /** Slots between two readings (50 ms each but the last). */
  slots: number;
  longestSlotMs: number;
  slotsOver10Ms: number;
}

/** Summarises runQueueWaitMs readings taken in order (cumulative ms); null with fewer than two. */
export function runQueueWaits(readings: number[]): RunQueueWaits | null {
  if (readings.length < 2) return null;
  const slots = readings.slice(1).map((r, i) => r - readings[i]!);
  return { ms: round1(readings.at(-1)! - readings[0]!), slots: slots.length, longestSlotMs: round1(Math.max(...slots)), slotsOver10Ms: slots.filter((w) => w > 10).length };
}

export async function startService(o: ServiceOptions): Promise<RunningService> {
  mkdirSync(o.dir, { recursive: true });
  const usersFile = join(o.dir, "users.json");
  writeFileSync(usersFile, JSON.stringify({ users: Object.entries(BENCH_USERS).map(([k, u]) => ({ ...u, token: benchToken(k as BenchUser) })) }));
  const port = await freePort();
  const env = {
    ...process.env,
    NODE_ENV: "test",
    PORT: String(port),
    REDIS_URL: o.redisUrl,
    SMTP_URL: o.smtpUrl,
    USERS_FILE: usersFile,
    LINK_SECRET: "bench-link-secret-0123456789abcdef0123456789",
    HOLD_MIN_SECONDS: "1",
    // Large audiences go all at once here (staged sends have their own tests and bench phase).
    WAVES_THRESHOLD: "0",
    // The bucket still runs on every claim.
    SEND_RATE_PER_SECOND: String(o.sendRatePerSecond ?? 10_000_000),
    SMTP_POOL_SIZE: String(o.poolSize),
    RECIPIENTS_PER_TRANSACTION: String(o.recipientsPerTransaction),
    API_RATE_LIMIT_PER_MINUTE: "1000000",
    LINK_RATE_LIMIT_PER_MINUTE: "1000000",
    LOG_LEVEL: "warn",
    ...o.env,
  };
  // One directory per process: node writes one profile per thread (tsx's loader runs in a thread of its own).
  const nodeArgs = (name: string) => [
    // As package.json's start scripts and the Dockerfile run it (why: docs/performance.md, "Memory").
    "--max-old-space-size=512",
    ...(o.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${join(o.profileDir, name)}`] : []),
    "--import",
    "tsx",
    join(REPO, "src/main.ts"),
  ];
  const children: ChildProcess[] = [];
  const launch = (mode: "all" | "api" | "worker", name: string, extraEnv: Record<string, string> = {}) => {
    const c = spawn(process.execPath, [...nodeArgs(name), mode], { cwd: REPO, env: { ...env, ...extraEnv }, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    c.stderr!.on("data", (d: Buffer) => {
      stderr += d.toString();
      if (stderr.length > 20_000) stderr = stderr.slice(-10_000);
    });
    c.once("exit", (code, signal) => {
      if (!stopping && code !== 0) process.stderr.write(`bench: airlock ${name} exited (${code ?? signal}):\n${stderr.slice(-4000)}\n`);
    });
    children.push(c);
    if (o.cpus) uncaps.push(capCpu(c.pid!, o.cpus));
    return c;
  };
  const uncaps: Array<() => void> = [];
  let stopping = false;
  const main = launch(o.apiApart ? "api" : "all", o.apiApart ? "airlock-api" : "airlock-all");
  const url = `http://127.0.0.1:${port}`;
  // A worker-only process answers /healthz on METRICS_PORT once its workers run.
  const probes: Array<{ child: ChildProcess; url: string }> = [{ child: main, url: `${url}/readyz` }];
  for (let i = 0; i < (o.extraWorkers ?? 0) + (o.apiApart ? 1 : 0); i++) {
    const metricsPort = await freePort();
    probes.push({ child: launch("worker", `airlock-worker${i + 1}`, { METRICS_PORT: String(metricsPort) }), url: `http://127.0.0.1:${metricsPort}/healthz` });
  }
  const deadline = Date.now() + 60_000;
  for (const p of probes) {
    for (;;) {
      if (p.child.exitCode !== null) throw new Error(`airlock exited with ${p.child.exitCode} before it was ready`);
      const ready = await fetch(p.url).then((r) => r.ok, () => false);
      if (ready) break;
      if (Date.now() > deadline) throw new Error("airlock did not become ready within 60 s");
      await new Promise((r) => setTimeout(r, 100)); // the process is starting (tsx compiles on the fly): poll readiness
    }
  }

  return {
    url,
    pids: children.map((c) => c.pid!),
    peakRss: () => children.map((c) => statusField(c.pid!, "VmHWM")),
    rss: () => children.map((c) => statusField(c.pid!, "VmRSS")),
    async stop() {
      stopping = true;
      // SIGTERM: main.ts stops gracefully (and node writes the CPU profile on that exit).
      await Promise.all(children.map((c) => stopChild(c, 15_000)));
      uncaps.forEach((u) => u());
    },
  };
}
