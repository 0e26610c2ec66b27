import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { startRedisProcess } from "../src/infra/redis-process.js";
import { luaLifecycle } from "../src/store/lua-lifecycle.js";
const read = (n: string) => readFileSync(new URL(`../src/store/lua/${n}`, import.meta.url), "utf8");
const pro = luaLifecycle() + read("prologue.lua");
const fan = `local CORRECTION_DUPLICATE = "x"\nlocal AIRLOCK = "a"\nlocal MAX_EVIDENCE = 5\n` + read("fanout-prologue.lua");
const proc = await startRedisProcess({ dir: mkdtempSync(join(tmpdir(), "lc-")) });
const r = new Redis(proc.url);
const cpu = async () => { const i = await r.info("cpu"); const v = (k: string) => Number(new RegExp(`^${k}:([\\d.]+)`, "m").exec(i)![1]); return v("used_cpu_user") + v("used_cpu_sys"); };
const keysN = Array.from({ length: 22 }, (_, i) => `{m1}:k${i}`);
const variants: Record<string, string> = {
  "return 1": "return 1",
  "prologue only": pro + "\nreturn 1",
  "prologue+fanout": pro + fan + "\nreturn 1",
  "p+f + HGET state": pro + fan + "\nreturn field(KEYS[1],'state') or 'n'",
};
const N = 20000;
for (const [name, src] of Object.entries(variants)) {
  const sha = await r.script("LOAD", src) as string;
  for (let round = 0; round < 2; round++) {
    const c0 = await cpu();
    for (let i = 0; i < N; i += 100) {
      const p = r.pipeline();
      for (let j = 0; j < 100; j++) p.evalsha(sha, keysN.length, ...keysN, "ev", String(Date.now()), "w", "original", "1", "2");
      await p.exec();
    }
    const us = ((await cpu()) - c0) * 1e6 / N;
    if (round === 1) console.log(name.padEnd(22), us.toFixed(1), "µs/call");
  }
}
r.disconnect(); await proc.stop();
