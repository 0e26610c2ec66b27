/** Test harness: a private redis-server per test file, on a free port, in a temporary dir. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll } from "vitest";
import { startRedisProcess, type RedisProcess } from "../../src/infra/redis-process.js";

export interface TestRedis extends RedisProcess {
  cleanup(): Promise<void>;
}

export async function startTestRedis(opts: { appendfsync?: "always" | "everysec" } = {}): Promise<TestRedis> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-redis-"));
  const proc = await startRedisProcess({ dir, appendfsync: opts.appendfsync });
  return {
    ...proc,
    async cleanup() {
      await proc.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A private redis-server and a client to it for the whole test file; both are there from beforeAll on. */
export function redisForThisFile(opts: { appendfsync?: "always" | "everysec" } = {}): { server: TestRedis; redis: Redis } {
  const ctx = {} as { server: TestRedis; redis: Redis };
  beforeAll(async () => {
    ctx.server = await startTestRedis(opts);
    ctx.redis = new Redis(ctx.server.url);
  });
  afterAll(async () => {
    ctx.redis?.disconnect();
    await ctx.server?.cleanup();
  });
  return ctx;
}
