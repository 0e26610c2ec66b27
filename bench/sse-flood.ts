/**
 * Is a dashboard that never reads dropped, rather than buffered for without bound? The readers
 * of bench/sse-clients.mts are closed, then `megabytes` of events are published on the service's
 * events channel (frames of ~1 KB that no dashboard acts on) while the service's RSS is sampled.
 * Then the silent client starts reading: if it was dropped, its stream ends after what the
 * kernel's socket buffers and the service had taken before the drop, far less than was published.
 */
import type { Redis } from "ioredis";
import { keys } from "../src/store/keys.js";
import type { HelperProcess } from "./child-ipc.js";
import type { RunningService } from "./service.js";

export interface SlowClientResult {
  /** Its stream ended, having received less than was published. */
  dropped: boolean;
  receivedKb: number;
  publishedKb: number;
  /** The service process's RSS before the flood, at its highest during it, after it. */
  rssBeforeMb: number;
  rssPeakMb: number;
  rssAfterMb: number;
}

const mb = (b: number) => Math.round((b / 1024 / 1024) * 10) / 10;

export async function floodSlowClient(o: { redis: Redis; sse: HelperProcess<unknown>; service: RunningService; megabytes?: number }): Promise<SlowClientResult> {
  await o.sse.ask("close-readers");
  const rss = () => o.service.rss()[0]!;
  const before = rss();
  let peak = before;
  const sampler = setInterval(() => (peak = Math.max(peak, rss())), 20);
  const payload = JSON.stringify({ kind: "flood", id: "0", state: "flood", revision: 0, at: 0, pad: "x".repeat(1000) });
  const frame = Buffer.byteLength(`event: flood\ndata: ${payload}\n\n`);
  const count = Math.ceil(((o.megabytes ?? 16) * 1024 * 1024) / frame);
  for (let i = 0; i < count; i += 200) {
    const p = o.redis.pipeline();
    for (let j = i; j < Math.min(count, i + 200); j++) p.publish(keys.events(), payload);
    await p.exec();
  }
  // The service broadcasts what it received; a little time for the last of it.
  await new Promise((r) => setTimeout(r, 500));
  clearInterval(sampler);
  const after = rss();
  const slow = await o.sse.ask<{ bytes: number; ended: boolean }>("read-slow", { quietMs: 2000 });
  return {
    dropped: slow.ended && slow.bytes < count * frame,
    receivedKb: Math.round(slow.bytes / 1024),
    publishedKb: Math.round((count * frame) / 1024),
    rssBeforeMb: mb(before),
    rssPeakMb: mb(peak),
    rssAfterMb: mb(after),
  };
}
