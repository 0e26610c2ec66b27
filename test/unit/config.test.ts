import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { waveSettings } from "../../src/waves/settings.js";
import { lockTiming } from "../../workers/run-workers.js";

describe("config", () => {
  it("has working development defaults", () => {
    const c = loadConfig({});
    expect(c.HOLD_MIN_SECONDS).toBe(900);
    expect(c.RECIPIENTS_PER_TRANSACTION).toBe(50);
    expect(c.PUBLIC_URL).toBe("http://localhost:3000");
    expect(Object.isFrozen(c)).toBe(true);
  });

  it("names each bad variable", () => {
    try {
      loadConfig({ PORT: "http", SEND_RATE_PER_SECOND: "-1", REDIS_URL: "nope" });
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(ConfigError);
      const text = (e as ConfigError).message;
      for (const name of ["PORT", "SEND_RATE_PER_SECOND", "REDIS_URL"]) expect(text).toContain(name);
    }
  });

  it("stages sends from LARGE_AUDIENCE_THRESHOLD by default, with the spec's canary and wait, and names bad staged-send settings", () => {
    const w = waveSettings(loadConfig({}));
    expect(w).toMatchObject({ from: 1000, canaryPercent: 1, canaryMinimum: 50, waitMs: 600_000, thresholds: { replies: 3, reports: 1, bouncePercent: 2, failurePercent: 2 } });
    expect(waveSettings(loadConfig({ WAVES_THRESHOLD: "0", LARGE_AUDIENCE_THRESHOLD: "50" })).from).toBe(0);
    expect(waveSettings(loadConfig({ LARGE_AUDIENCE_THRESHOLD: "50", CANARY_WAIT_MINUTES: "0.5" }))).toMatchObject({ from: 50, waitMs: 30_000 });
    expect(loadConfig({ RETURN_PATH_DOMAIN: "Bounces.Corp.Example" }).RETURN_PATH_DOMAIN).toBe("bounces.corp.example");
    const bad = { CANARY_PERCENT: "0", CANARY_WAIT_MINUTES: "-1", RETURN_PATH_DOMAIN: "not a domain", SIGNAL_REPLIES: "0" };
    const text = (() => {
      try {
        loadConfig(bad);
      } catch (e) {
        return (e as ConfigError).message;
      }
      return "";
    })();
    for (const name of Object.keys(bad)) expect(text).toContain(name);
  });

  it("requires the secrets and peers in production", () => {
    expect(() => loadConfig({ NODE_ENV: "production" })).toThrow(/REDIS_URL[\s\S]*SMTP_URL[\s\S]*USERS_FILE[\s\S]*LINK_SECRET[\s\S]*AUDIT_SECRET/);
  });

  const production = {
    NODE_ENV: "production",
    SMTP_URL: "smtp://mail.corp.example:25",
    USERS_FILE: "/etc/airlock/users.json",
    LINK_SECRET: "l".repeat(32),
    AUDIT_SECRET: "a".repeat(32),
  };

  it("accepts sentinels in place of REDIS_URL, and parses them", () => {
    const c = loadConfig({ ...production, REDIS_SENTINELS: "10.0.0.1:26379, sentinel-2.corp.example:26380,[::1]:26381" });
    expect(c.REDIS_SENTINELS).toEqual([
      { host: "10.0.0.1", port: 26379 },
      { host: "sentinel-2.corp.example", port: 26380 },
      { host: "::1", port: 26381 },
    ]);
    expect(c.REDIS_SENTINEL_NAME).toBe("airlock");
    expect(() => loadConfig({ ...production, REDIS_SENTINELS: "10.0.0.1" })).toThrow(/REDIS_SENTINELS[\s\S]*not host:port/);
    expect(() => loadConfig({ REDIS_MIN_REPLICAS_ACK: "1" })).toThrow(/REDIS_MIN_REPLICAS_ACK/);
  });

  it("requires TLS to a remote SMTP server in production, unless told otherwise", () => {
    expect(loadConfig({ ...production, REDIS_URL: "redis://r:6379" }).SMTP_TLS).toBe("required");
    expect(loadConfig({ ...production, REDIS_URL: "redis://r:6379", SMTP_URL: "smtp://127.0.0.1:2525" }).SMTP_TLS).toBe("opportunistic");
    expect(loadConfig({ ...production, REDIS_URL: "redis://r:6379", SMTP_TLS: "none" }).SMTP_TLS).toBe("none");
    expect(loadConfig({ SMTP_URL: "smtp://mail.corp.example:25" }).SMTP_TLS).toBe("opportunistic");
    expect(() => loadConfig({ SMTP_TLS: "sometimes" })).toThrow(/SMTP_TLS/);
  });
});

describe("worker lock timing (workers/run-workers.ts)", () => {
  it("with the default, takes a dead worker's jobs over within 10 s and survives a 3 s stall", () => {
    const t = lockTiming(loadConfig({}).WORKER_LOCK_SECONDS * 1000);
    // Worst case after a death: the lock lapses one lockDuration after the last renewal, and the
    // stalled check needs up to one more interval to see it.
    expect(t.lockDuration + t.stalledInterval).toBeLessThanOrEqual(10_000);
    // A stall delays the next renewal, due lockRenewTime after the last one: it must land before the lapse.
    expect(t.lockDuration - t.lockRenewTime).toBeGreaterThanOrEqual(3_000 + 1_000);
  });
});
