import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";

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

  it("requires the secrets and peers in production", () => {
    expect(() => loadConfig({ NODE_ENV: "production" })).toThrow(/REDIS_URL[\s\S]*SMTP_URL[\s\S]*USERS_FILE[\s\S]*LINK_SECRET/);
  });
});
