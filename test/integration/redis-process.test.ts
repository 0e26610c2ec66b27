import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestRedis, type TestRedis } from "../support/redis.js";

describe("redis test harness", () => {
  let redis: TestRedis;
  beforeAll(async () => {
    redis = await startTestRedis({ appendfsync: "always" });
  });
  afterAll(async () => redis?.cleanup());

  it("runs a private redis with AOF on and noeviction, surviving kill -9", async () => {
    const c = new Redis(redis.url);
    try {
      expect(await c.config("GET", "appendonly")).toEqual(["appendonly", "yes"]);
      expect(await c.config("GET", "maxmemory-policy")).toEqual(["maxmemory-policy", "noeviction"]);
      await c.set("k", "v");
      await redis.kill();
      await redis.restart();
      expect(await c.get("k")).toBe("v");
    } finally {
      c.disconnect();
    }
  });
});
