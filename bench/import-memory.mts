/**
 * `npx tsx bench/import-memory.mts [--recipients N] [--format csv|json]`: imports N generated
 * recipients through the API of one service process (started as the bench starts it) and samples
 * its RSS and V8 heap every 250 ms (from /metrics), to see whether an import's memory grows with
 * the audience. Prints about 20 samples, then the import time and the peak RSS (VmHWM).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startRedisProcess } from "../src/infra/redis-process.js";
import { api, importAudience } from "./phases.js";
import { startService } from "./service.js";

const { values: args } = parseArgs({ options: { recipients: { type: "string", default: "1000000" }, format: { type: "string", default: "csv" } } });
const N = Number(args.recipients);
const FORMAT = args.format === "json" ? "json" : "csv";
const work = mkdtempSync(join(tmpdir(), "airlock-import-mem-"));
const redisProc = await startRedisProcess({ dir: join(work, "redis") });
const service = await startService({ dir: join(work, "svc"), redisUrl: redisProc.url, smtpUrl: "smtp://127.0.0.1:1", recipientsPerTransaction: 50, poolSize: 1 });
const metric = (text: string, name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)`, "m").exec(text)?.[1] ?? NaN);
const samples: Array<{ t: number; rssMb: number; heapUsedMb: number; heapTotalMb: number; externalMb: number }> = [];
const t0 = performance.now();
let sampling = true;
const sampler = (async () => {
  while (sampling) {
    const text = await fetch(`${service.url}/metrics`).then((r) => r.text(), () => "");
    const mb = (x: number) => Math.round(x / 1e5) / 10;
    samples.push({
      t: Math.round(performance.now() - t0),
      rssMb: mb(service.rss()[0]!),
      heapUsedMb: mb(metric(text, "airlock_nodejs_heap_size_used_bytes")),
      heapTotalMb: mb(metric(text, "airlock_nodejs_heap_size_total_bytes")),
      externalMb: mb(metric(text, "airlock_nodejs_external_memory_bytes")),
    });
    await new Promise((r) => setTimeout(r, 250)); // a sample every 250 ms is enough to see a trend
  }
})();
try {
  const r = await importAudience(api(service.url), "mem", N, FORMAT);
  sampling = false;
  await sampler;
  const peak = service.peakRss()[0]! / 1e6;
  const step = Math.max(1, Math.floor(samples.length / 20));
  for (let i = 0; i < samples.length; i += step) console.log(JSON.stringify(samples[i]));
  console.log(JSON.stringify({ recipients: N, format: FORMAT, importMs: Math.round(r.ms), peakRssMb: Math.round(peak * 10) / 10 }));
} finally {
  await service.stop();
  await redisProc.stop();
}
