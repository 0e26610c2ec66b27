/** The service refuses a Redis that may evict keys, and says loudly when the append-only file is off. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createRuntime } from "../../src/runtime.js";
import { startTestRedis, type TestRedis } from "../support/redis.js";
import { capturingLogger } from "../support/logger.js";

let server: TestRedis;
let admin: Redis;
let dir: string;

beforeAll(async () => {
  server = await startTestRedis();
  admin = new Redis(server.url);
  dir = mkdtempSync(join(tmpdir(), "airlock-startup-"));
  writeFileSync(join(dir, "users.json"), JSON.stringify({ users: [{ email: "ops@corp.example", name: "Ops", roles: ["ops"], tokenSha256: "0".repeat(64) }] }));
});
afterAll(async () => {
  admin?.disconnect();
  await server?.cleanup();
  rmSync(dir, { recursive: true, force: true });
});

const production = () =>
  loadConfig({
    NODE_ENV: "production",
    REDIS_URL: server.url,
    SMTP_URL: "smtp://127.0.0.1:2525",
    USERS_FILE: join(dir, "users.json"),
    LINK_SECRET: "startup-test-secret-0123456789abcdef0123",
    AUDIT_SECRET: "startup-audit-secret-0123456789abcdef0123",
    LOG_LEVEL: "info",
  });


it("refuses to start when maxmemory-policy is not noeviction", async () => {
  await admin.config("SET", "maxmemory-policy", "allkeys-lru");
  try {
    await expect(createRuntime({ config: production(), dataDir: dir, logger: pino({ level: "silent" }) })).rejects.toThrow(/maxmemory-policy is allkeys-lru.*noeviction/);
  } finally {
    await admin.config("SET", "maxmemory-policy", "noeviction");
  }
});

it("starts, but logs an error, when the append-only file is off in production", async () => {
  await admin.config("SET", "appendonly", "no");
  const { logger, lines } = capturingLogger();
  const rt = await createRuntime({ config: production(), dataDir: dir, logger });
  try {
    const warning = lines.find((l) => /append-only file is OFF/.test(l.msg));
    expect(warning?.level).toBe(50); // pino's "error"
  } finally {
    await rt.stop();
    await admin.config("SET", "appendonly", "yes");
    // Turning AOF on starts a rewrite, and Redis refuses SIGTERM until it is done: wait for it.
    for (let i = 0; i < 400 && !/aof_rewrite_in_progress:0[\s\S]*aof_rewrite_scheduled:0/.test(await admin.info("persistence")); i++) {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
});

it("says nothing about the append-only file when it is on", async () => {
  const { logger, lines } = capturingLogger();
  const rt = await createRuntime({ config: production(), dataDir: dir, logger });
  await rt.stop();
  expect(lines.some((l) => /append-only/.test(l.msg))).toBe(false);
});

it("advises lazy freeing when Redis frees large keys in place, and says nothing when it does not", async () => {
  const quiet = capturingLogger();
  await (await createRuntime({ config: production(), dataDir: dir, logger: quiet.logger })).stop();
  expect(quiet.lines.some((l) => /lazyfree/.test(l.msg))).toBe(false);
  await admin.config("SET", "lazyfree-lazy-user-del", "no");
  try {
    const { logger, lines } = capturingLogger();
    await (await createRuntime({ config: production(), dataDir: dir, logger })).stop();
    expect(lines.find((l) => /lazyfree-lazy-user-del/.test(l.msg))?.level).toBe(40); // pino's "warn"
  } finally {
    await admin.config("SET", "lazyfree-lazy-user-del", "yes");
  }
});
