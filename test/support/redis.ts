/** Test harness: a private redis-server per test file, on a free port, in a temporary dir. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
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
