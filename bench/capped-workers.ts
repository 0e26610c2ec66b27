/**
 * `ratioTwoWorkersCapped` (issue 18): two worker processes against one, each process capped at
 * half a core (bench/cpu-cap.ts: a CFS quota in a cgroup of its own, as `docker --cpus 0.5`). On
 * a 2-core machine that also runs Redis and the SMTP sink, an uncapped process already takes the
 * machine (docs/performance.md, "Two worker processes"); capped, each is a worker on a small
 * machine of its own and the question "does a second worker add throughput?" can be asked.
 *
 * Each service first sends a warm-up fan-out (untimed): every process compiles its hot code once,
 * which a run of a few seconds would otherwise charge to the two-process side twice.
 * Null when the cgroup cap is not possible here (not root, no cpu controller).
 */
import { spawn } from "node:child_process";
import { capCpu } from "./cpu-cap.js";
import type { FanoutResult } from "./phases.js";
import type { RunningService } from "./service.js";
import { stopChild } from "./sink.js";

export interface CappedPair {
  cpusPerProcess: number;
  oneRcptPerSec: number;
  twoRcptPerSec: number;
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
  const rates: number[] = [];
  let recipients = 0;
  for (const extra of [0, 1]) {
    const svc = await o.start(`capped-${extra + 1}`, extra);
    try {
      await o.warmUp(svc);
      const r = await o.fanout(svc);
      rates.push(r.rcptPerSec);
      recipients = r.recipients;
      o.log(`two-workers-capped: ${extra + 1} process(es) at ${o.cpus} CPU each: ${Math.round(r.rcptPerSec)} recipients/s`);
    } finally {
      await svc.stop();
    }
  }
  return { cpusPerProcess: o.cpus, oneRcptPerSec: Math.round(rates[0]!), twoRcptPerSec: Math.round(rates[1]!), ratio: Math.round((rates[1]! / rates[0]!) * 100) / 100, recipients };
}
