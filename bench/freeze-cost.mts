/**
 * `npx tsx bench/freeze-cost.mts`: how long freezing several audience lists blocks Redis, the old
 * way (one ZUNIONSTORE, inline below: it is no longer in the code) against the real submit
 * (`MessageStore.submit`, i.e. submit.lua: COPY of the largest list, then ZADD of the others'
 * members 1,000 at a time). Each is one script call on a Redis of its own (as the service's, with
 * lazy freeing), timed by its round trip, twice.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { startRedisProcess } from "../src/infra/redis-process.js";
import { keys } from "../src/store/keys.js";
import { MessageStore } from "../src/store/message-store.js";
import { approvalLadder } from "../src/domain/policies.js";

const work = mkdtempSync(join(tmpdir(), "airlock-freeze-"));
const r = await startRedisProcess({ dir: join(work, "redis") });
const redis = new Redis(r.url);
const store = new MessageStore(redis, { now: () => Date.now() });

/** Adds `n` generated addresses from number `from` on, 1,000 per ZADD. */
async function fill(key: string, from: number, n: number) {
  for (let i = 0; i < n; i += 1000) {
    const args: (string | number)[] = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) args.push(0, `person${String(from + j).padStart(7, "0")}@corp.example`);
    await redis.zadd(key, ...args);
  }
}

const UNION = `redis.call('DEL', KEYS[1]); redis.call('ZUNIONSTORE', KEYS[1], #KEYS - 1, unpack(KEYS, 2)); return redis.call('ZCARD', KEYS[1])`;
let nextId = 1;
async function submit(lists: string[]): Promise<number> {
  const id = String(nextId++);
  const now = Date.now();
  const fields = { digest: "0".repeat(64), markdown: "", template: "", subject: "Freeze", text: "x", html: null, from: "comms@corp.example", audience: { lists, addresses: [] }, toHeader: "All <all@corp.example>", author: "bench@corp.example", holdSeconds: 1, sendAt: null, expiresAt: now + 3_600_000, messageId: `<freeze-${id}@bench>` };
  const a = await store.submit("create", id, "bench@corp.example", fields, approvalLadder({ approvalsRequired: 1, largeAudienceThreshold: 1000, largeAudienceApprovals: 2 }), now, { maxRevisions: 50 });
  if (!a.ok) throw new Error(`submit refused: ${JSON.stringify(a)}`);
  await redis.del(keys.recipients(id)); // freed in the background: not to pile up over the runs
  return Number(a.recipientCount);
}

const cases: Array<[string, Array<[number, number]>]> = [
  ["999k + 1k", [[0, 999_000], [2_000_000, 1000]]], // a submit freezes at most 1,000,000
  ["500k + 500k", [[0, 500_000], [500_000, 500_000]]],
  ["4 x 250k overlapping half", [[0, 250_000], [125_000, 250_000], [250_000, 250_000], [375_000, 250_000]]],
];
for (const [label, lists] of cases) {
  await redis.flushall();
  const names = lists.map((_, i) => `freeze-${i}`);
  for (let i = 0; i < lists.length; i++) await fill(keys.audience(names[i]!), lists[i]![0], lists[i]![1]);
  const ways = { ZUNIONSTORE: () => redis.eval(UNION, names.length + 1, "dst", ...names.map(keys.audience)), "submit.lua": () => submit(names) };
  for (const name of ["ZUNIONSTORE", "submit.lua", "ZUNIONSTORE", "submit.lua"] as const) {
    const t = performance.now();
    const n = await ways[name]();
    console.log(`${label}: ${name} ${n} members in ${Math.round(performance.now() - t)} ms`);
  }
}
redis.disconnect();
await r.stop();
rmSync(work, { recursive: true, force: true });
