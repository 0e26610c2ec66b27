/**
 * `npx tsx bench/freeze-cost.mts`: how long freezing several audience lists blocks Redis, the old
 * way (ZUNIONSTORE) against the way submit.lua does it now (COPY of the largest list, then ZADD of
 * the others' members 1,000 at a time; the Lua below mirrors submit.lua's freeze). Each is one
 * EVAL on a Redis of its own (as the service's, with lazy freeing), timed by its round trip, twice.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { startRedisProcess } from "../src/infra/redis-process.js";
const work = mkdtempSync(join(tmpdir(), "airlock-freeze-"));
const r = await startRedisProcess({ dir: join(work, "redis") });
const redis = new Redis(r.url);
/** Adds `n` generated addresses from number `from` on, 1,000 per ZADD. */
async function fill(key: string, from: number, n: number) {
  for (let i = 0; i < n; i += 1000) {
    const args: (string | number)[] = [];
    for (let j = i; j < Math.min(n, i + 1000); j++) args.push(0, `person${String(from + j).padStart(7, "0")}@corp.example`);
    await redis.zadd(key, ...args);
  }
}
const UNION = `redis.call('DEL', KEYS[1]); redis.call('ZUNIONSTORE', KEYS[1], #KEYS - 1, unpack(KEYS, 2)); return redis.call('ZCARD', KEYS[1])`;
const COPYADD = `
redis.call('DEL', KEYS[1])
local largest, size = 2, -1
for i = 2, #KEYS do local n = redis.call('ZCARD', KEYS[i]); if n > size then largest, size = i, n end end
redis.call('COPY', KEYS[largest], KEYS[1])
for i = 2, #KEYS do
  if i ~= largest then
    local n = redis.call('ZCARD', KEYS[i])
    for start = 0, n - 1, 1000 do
      local batch = {}
      for _, m in ipairs(redis.call('ZRANGE', KEYS[i], start, start + 999)) do batch[#batch + 1] = 0; batch[#batch + 1] = m end
      redis.call('ZADD', KEYS[1], unpack(batch))
    end
  end
end
return redis.call('ZCARD', KEYS[1])`;
const cases: Array<[string, Array<[number, number]>]> = [
  ["1M + 1k", [[0, 1_000_000], [2_000_000, 1000]]],
  ["500k + 500k", [[0, 500_000], [500_000, 500_000]]],
  ["4 x 250k overlapping half", [[0, 250_000], [125_000, 250_000], [250_000, 250_000], [375_000, 250_000]]],
];
for (const [label, lists] of cases) {
  await redis.flushall();
  const keys = lists.map((_, i) => `l${i}`);
  for (let i = 0; i < lists.length; i++) await fill(keys[i]!, lists[i]![0], lists[i]![1]);
  for (const [name, script] of [["ZUNIONSTORE", UNION], ["COPY+ZADD", COPYADD], ["ZUNIONSTORE", UNION], ["COPY+ZADD", COPYADD]] as const) {
    const t = performance.now();
    const n = await redis.eval(script, keys.length + 1, "dst", ...keys);
    console.log(`${label}: ${name} ${n} members in ${Math.round(performance.now() - t)} ms`);
  }
}
redis.disconnect();
await r.stop();
rmSync(work, { recursive: true, force: true });
