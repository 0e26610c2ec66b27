/**
 * Which Redis commands were slow during a phase, from Redis's own records: `SLOWLOG` (every
 * command slower than a low threshold, with its duration measured inside Redis, i.e. time during
 * which Redis served nobody else) and `LATENCY LATEST` (the latency monitor's worst events,
 * AOF fsyncs and the expire cycle included). Scripts are named: EVALSHA by the SHA-1 of each
 * message script (store/scripts.ts) and EVAL by the opening of each audience script.
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { CHUNK_SCRIPT, COMMIT_SCRIPT, COMMON_SLICE_SCRIPT, CURRENT_SCRIPT, DELETE_SCRIPT } from "../src/audiences/audience-scripts.js";
import { ANSWERS } from "../src/store/script-answers.js";
import { scriptSource, type ScriptName } from "../src/store/scripts.js";
import { FREEZE_SLICE_LUA } from "../src/store/recipient-freeze.js";

export interface SlowCommand {
  ms: number;
  /** `EVALSHA submit`, `EVAL audience-commit`, `ZADD`, … */
  command: string;
  /** First key, when it tells whose command it was. */
  key: string | null;
  /** Epoch seconds (Redis's clock). */
  at: number;
}

export interface RedisEvidence {
  thresholdUs: number;
  /** Slowest first; the ten slowest. */
  slowest: SlowCommand[];
  /** Per command name: how many went over the threshold, the longest, their sum. */
  byCommand: Record<string, { count: number; maxMs: number; totalMs: number }>;
  over20Ms: number;
  entries: number;
  /** `LATENCY LATEST`: event, latest and worst ms. */
  latency: Array<{ event: string; latestMs: number; maxMs: number }>;
}

const sha1 = (s: string) => createHash("sha1").update(s).digest("hex");
const SHAS = new Map<string, string>([
  ...(Object.keys(ANSWERS) as ScriptName[]).map((n): [string, string] => [sha1(scriptSource(n)), n]),
  [sha1(FREEZE_SLICE_LUA), "freeze-slice"],
]);
const EVALS: Array<[string, string]> = [
  ["audience-chunk", CHUNK_SCRIPT],
  ["audience-commit", COMMIT_SCRIPT],
  ["audience-current", CURRENT_SCRIPT],
  ["audience-common-slice", COMMON_SLICE_SCRIPT],
  ["audience-delete", DELETE_SCRIPT],
];

function name(args: string[]): { command: string; key: string | null } {
  const verb = (args[0] ?? "?").toUpperCase();
  if (verb === "EVALSHA" || verb === "EVAL") {
    const body = args[1] ?? "";
    const known = verb === "EVALSHA" ? SHAS.get(body) : EVALS.find(([, src]) => src.startsWith(body.replace(/\.\.\. \(\d+ more bytes\)$/, "")))?.[0];
    // Not ours: BullMQ's scripts (its job bookkeeping).
    return { command: `${verb} ${known ?? `other:${body.slice(0, 8)}`}`, key: Number(args[2] ?? 0) > 0 ? (args[3] ?? null) : null };
  }
  return { command: verb, key: args[1] ?? null };
}

/** Lowers the thresholds (restored by `restore`); `reset` starts the records afresh. */
export async function watchRedis(redis: Redis, thresholdUs = 1000) {
  const before = Object.fromEntries(
    await Promise.all(["slowlog-log-slower-than", "slowlog-max-len", "latency-monitor-threshold"].map(async (k) => [k, ((await redis.config("GET", k)) as string[])[1]!] as const)),
  );
  await redis.config("SET", "slowlog-log-slower-than", String(thresholdUs));
  await redis.config("SET", "slowlog-max-len", "10000");
  await redis.config("SET", "latency-monitor-threshold", String(Math.max(1, Math.round(thresholdUs / 1000))));
  return {
    async reset(): Promise<void> {
      await redis.slowlog("RESET");
      await redis.call("LATENCY", "RESET");
    },
    async collect(): Promise<RedisEvidence> {
      // LATENCY first: reading thousands of slow-log entries is itself a command of tens of ms, which
      // the latency monitor would record as the window's latest and worst `command`.
      const latency = ((await redis.call("LATENCY", "LATEST")) as Array<[string, number, number, number]>).map(([event, , latest, max]) => ({ event, latestMs: latest, maxMs: max }));
      const raw = (await redis.slowlog("GET", -1)) as Array<[number, number, number, string[]]>;
      // The bench's own bookkeeping (the SLOWLOG RESET that opens the window, LATENCY, CONFIG) is not the service's.
      const own = new Set(["SLOWLOG", "LATENCY", "CONFIG"]);
      const all = raw.map(([, at, us, args]) => ({ ms: Math.round(us / 100) / 10, at, ...name(args.map(String)) })).filter((c) => !own.has(c.command));
      const byCommand: RedisEvidence["byCommand"] = {};
      for (const c of all) {
        const b = (byCommand[c.command] ??= { count: 0, maxMs: 0, totalMs: 0 });
        b.count++;
        b.maxMs = Math.max(b.maxMs, c.ms);
        b.totalMs = Math.round((b.totalMs + c.ms) * 10) / 10;
      }
      return {
        thresholdUs,
        slowest: [...all].sort((a, b) => b.ms - a.ms).slice(0, 10),
        byCommand,
        over20Ms: all.filter((c) => c.ms > 20).length,
        entries: all.length,
        latency: latency.sort((a, b) => b.maxMs - a.maxMs),
      };
    },
    async restore(): Promise<void> {
      for (const [k, v] of Object.entries(before)) await redis.config("SET", k, v);
    },
  };
}
