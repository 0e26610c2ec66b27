/**
 * `ratioTwoWorkersCapped` (issue 18): two worker processes against one, each process capped at
 * half a core (bench/cpu-cap.ts: a CFS quota in a cgroup of its own, as `docker --cpus 0.5`). On
 * a 2-core machine that also runs Redis and the SMTP sink, an uncapped process already takes the
 * machine (docs/performance.md, "Two worker processes"); capped, each is a worker on a small
 * machine of its own and the question "does a second worker add throughput?" can be asked.
 *
 * Each service first sends a warm-up fan-out (untimed): every process compiles its hot code once,
 * which a run of a few seconds would otherwise charge to the two-process side twice.
 *
 * One process, two, two, one (A B B A), each run in a service started for it: one capped process
 * gave 45,000-77,000 recipients/s from one run to the next on this machine at the same half core
 * (docs/performance.md, session 27), so a single run of each side made the ratio 1.1-2.2. The
 * means of two runs each, in that order, cancel a drift of the machine across the phase.
 * Null when the cgroup cap is not possible here (not root, no cpu controller).
 */
import { spawn } from "node:child_process";
import { capCpu } from "./cpu-cap.js";
import { mean } from "./numbers.js";
import type { FanoutResult } from "./phases.js";
import type { RunningService } from "./service.js";
import { stopChild } from "./sink.js";

export interface CappedPair {
  cpusPerProcess: number;
  /** The means of the runs below. */
  oneRcptPerSec: number;
  twoRcptPerSec: number;
  /** Each run's rate, in the order run (one process: the first and the last run; two: the middle two). */
  oneRuns: number[];
  twoRuns: number[];
  ratio: number;
  recipients: number;
}

/** Null when a process can be capped here, else why not (tried on a `sleep` of its own). */
export async function cgroupCapUnavailable(): Promise<string | null> {
  const probe = spawn("sleep", ["30"], { stdio: "ignore" });
  try {
    const uncap = capCpu(probe.pid!, 0.5);
    await stopChild(probe, 1000);
    uncap();
    return null;
  } catch (e) {
    await stopChild(probe, 1000);
    return (e as Error).message;
  }
}

export async function runCappedPair(o: {
  cpus: number;
  /** Starts the service with `extraWorkers` worker-only processes, each process capped at `cpus`. */
  start(name: string, extraWorkers: number): Promise<RunningService>;
  warmUp(svc: RunningService): Promise<unknown>;
  fanout(svc: RunningService): Promise<FanoutResult>;
  log(s: string): void;
}): Promise<CappedPair | null> {
  const unavailable = await cgroupCapUnavailable();
  if (unavailable) {
    o.log(`two-workers-capped: skipped: ${unavailable}`);
    return null;
  }
  const runs: Record<1 | 2, number[]> = { 1: [], 2: [] };
  let recipients = 0;
  for (const [i, processes] of ([1, 2, 2, 1] as const).entries()) {
    const svc = await o.start(`capped-${processes}-${i + 1}`, processes - 1);
    try {
      await o.warmUp(svc);
      const r = await o.fanout(svc);
      runs[processes].push(Math.round(r.rcptPerSec));
      recipients = r.recipients;
      o.log(`two-workers-capped: ${processes} process(es) at ${o.cpus} CPU each (run ${i + 1} of 4): ${Math.round(r.rcptPerSec)} recipients/s`);
    } finally {
      await svc.stop();
    }
  }
  const one = mean(runs[1]);
  const two = mean(runs[2]);
  return { cpusPerProcess: o.cpus, oneRcptPerSec: Math.round(one), twoRcptPerSec: Math.round(two), oneRuns: runs[1], twoRuns: runs[2], ratio: Math.round((two / one) * 100) / 100, recipients };
}
