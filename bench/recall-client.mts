/**
 * The recall-under-load phase's recalls, sent and timed by a process of their own: the driver also
 * streams a million-row upload and polls Redis, and its event loop stalls for up to a few hundred
 * milliseconds at times (measured: `driverLoopDelayMs`), which a recall timed there would count as
 * the service's. An operator's browser does nothing else while it waits for a recall's answer.
 *
 * IPC: `recall {id}` answers `{status, ms, delivered, sentAt}` (ms from the request's start to its
 * answer read whole; sentAt on the wall clock, which the sink's instants are compared with).
 * `probe-start` / `probe-stop`: a PING to Redis every 10 ms, each one's round trip recorded, answered
 * by `probe-stop` as `{pings}` (ms, in the order taken): how long the smallest command waited for Redis,
 * blocks the slow log does not show included (a MULTI/EXEC runs as one block; EXEC is not logged).
 * With `--redis-pid`, `probe-stop` also answers `cpuWait`: how long Redis's main thread waited for a
 * core in the probe's time (bench/service.ts runQueueWaitMs), in all and in each 50 ms slot read
 * here, or null where the kernel does not tell. On a machine whose cores every process shares, a
 * command's time in the slow log includes such a wait.
 * Usage: node --import tsx bench/recall-client.mts --url U --token T --redis R [--redis-pid P];
 * prints `{"ready": true}`.
 */
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { runQueueWaitMs, runQueueWaits } from "./service.js";

const { values: args } = parseArgs({ options: { url: { type: "string" }, token: { type: "string" }, redis: { type: "string" }, "redis-pid": { type: "string" } } });
const redisPid = args["redis-pid"] === undefined ? null : Number(args["redis-pid"]);
const redis = new Redis(args.redis!);
let probing = false;
let pings: number[] = [];

async function probe() {
  while (probing) {
    const s = performance.now();
    await redis.ping();
    pings.push(performance.now() - s);
    await new Promise((r) => setTimeout(r, 10)); // the probe's pace: ~100 PINGs/s, a few % of a core here, nothing of Redis
  }
}

/** Redis's wait for a core so far (cumulative ms), read every 50 ms while probing. */
let waitReadings: number[] = [];
let waitTimer: NodeJS.Timeout | undefined;
function readWait() {
  const ms = redisPid === null ? null : runQueueWaitMs(redisPid);
  if (ms !== null) waitReadings.push(ms);
}
function watchWaits() {
  clearInterval(waitTimer); // a probe started again starts afresh
  waitReadings = [];
  readWait();
  // 50 ms: short enough to show a wait of the 20 ms a command may take, long enough to cost nothing.
  waitTimer = setInterval(readWait, 50);
  waitTimer.unref();
}
function cpuWait() {
  clearInterval(waitTimer);
  readWait(); // the last slot, shorter than 50 ms
  return runQueueWaits(waitReadings); // null where the kernel does not tell
}

async function recall(id: string) {
  const sentAt = Date.now();
  const s = performance.now();
  const r = await fetch(`${args.url}/api/messages/${encodeURIComponent(id)}/recall`, {
    method: "POST",
    headers: { authorization: `Bearer ${args.token}`, "content-type": "application/json" },
    body: JSON.stringify({ reason: "recall under load" }),
    signal: AbortSignal.timeout(60_000), // an unanswered recall fails the phase instead of hanging it
  });
  const body = (await r.json().catch(() => null)) as { delivered?: number } | null;
  return { status: r.status, ms: performance.now() - s, delivered: Number(body?.delivered ?? 0), sentAt };
}

process.on("message", (m: { op: string; seq: number; id?: string }) => {
  if (m.op === "probe-start") {
    pings = [];
    if (!probing) {
      probing = true;
      void probe(); // one loop, however often the probe is started
    }
    watchWaits();
    return process.send!({ seq: m.seq });
  }
  if (m.op === "probe-stop") {
    probing = false;
    return process.send!({ seq: m.seq, pings, cpuWait: cpuWait() });
  }
  if (m.op !== "recall") return process.send!({ seq: m.seq, error: `unknown op ${m.op}` });
  recall(m.id!).then(
    (r) => process.send!({ seq: m.seq, ...r }),
    (e: Error) => process.send!({ seq: m.seq, status: 0, ms: 0, delivered: 0, sentAt: Date.now(), error: e.message }),
  );
});
process.stdout.write(JSON.stringify({ ready: true }) + "\n");
process.on("disconnect", () => {
  redis.disconnect();
  process.exit(0);
});
