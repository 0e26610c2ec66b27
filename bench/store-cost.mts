/**
 * `npx tsx bench/store-cost.mts [--recipients N] [--per-transaction K]`: Redis's own CPU per fan-out
 * transaction (claim + settle of K recipients), measured alone: a message in `sending` with N
 * frozen recipients, claimed and settled one transaction after another on an otherwise idle
 * Redis (AOF on, as in production). Redis CPU is read from INFO cpu, so no other process's
 * scheduling is in the figure, unlike INFO commandstats under load.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { startRedisProcess } from "../src/infra/redis-process.js";
import { keys } from "../src/store/keys.js";
import { MessageStore, type FanoutOutcome } from "../src/store/message-store.js";

const { values } = parseArgs({ options: { recipients: { type: "string", default: "100000" }, "per-transaction": { type: "string", default: "50" } } });
const N = Number(values.recipients);
const K = Number(values["per-transaction"]);
const dir = mkdtempSync(join(tmpdir(), "airlock-store-cost-"));
const proc = await startRedisProcess({ dir });
const redis = new Redis(proc.url);
const cpu = async () => {
  const info = await redis.info("cpu");
  const v = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(info)![1]);
  return v("used_cpu_user") + v("used_cpu_sys");
};
try {
  const id = "1";
  for (let i = 0; i < N; i += 10_000) {
    const args: Array<string | number> = [];
    for (let j = i; j < Math.min(N, i + 10_000); j++) args.push(0, `person${String(j).padStart(7, "0")}@corp.example`);
    await redis.zadd(keys.recipients(id), ...args);
  }
  await redis.hset(keys.message(id), { id, state: "sending", revision: "1", createdAt: String(Date.now()), recipientCount: String(N), queued: String(N), inflight: "0", sent: "0", failed: "0" });
  const store = new MessageStore(redis, { now: () => Date.now() });
  const c0 = await cpu();
  const t0 = performance.now();
  let transactions = 0;
  for (let first = 0; first < N; first += K) {
    const claim = await store.claim(id, "original", first, Math.min(N, first + K) - 1, 1e7, 1e7, N - 1);
    if (!("claimed" in claim)) throw new Error(`claim answered ${JSON.stringify(claim)}`);
    const outcomes: FanoutOutcome[] = claim.addresses.map((address, j) => ({ index: claim.indexes[j]!, address, outcome: "s", reply: "" }));
    await store.settle(id, "original", outcomes);
    transactions++;
  }
  const ms = performance.now() - t0;
  const redisCpu = (await cpu()) - c0;
  const m = await redis.hmget(keys.message(id), "state", "sent");
  process.stdout.write(
    JSON.stringify({ recipients: N, perTransaction: K, transactions, state: m[0], sent: Number(m[1]), redisCpuSeconds: Math.round(redisCpu * 100) / 100, redisUsPerTransaction: Math.round((redisCpu * 1e6) / transactions), redisUsPerRecipient: Math.round(((redisCpu * 1e6) / N) * 100) / 100, wallMs: Math.round(ms) }) + "\n",
  );
} finally {
  redis.disconnect();
  await proc.stop();
  rmSync(dir, { recursive: true, force: true });
}
