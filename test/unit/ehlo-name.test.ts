import { describe, expect, it } from "vitest";
import { ehloName } from "../../src/mail/smtp-client.js";
import { loadConfig } from "../../src/config.js";

describe("EHLO name", () => {
  it("uses the configured name first", () => {
    expect(ehloName("airlock-1.corp.example", "box.corp.example", "10.0.0.5")).toBe("airlock-1.corp.example");
  });
  it("uses the host name when it is fully qualified", () => {
    expect(ehloName(undefined, "box.corp.example", "10.0.0.5")).toBe("box.corp.example");
  });
  it("falls back to the address literal of the connection for a bare host name (RFC 5321 4.1.3)", () => {
    expect(ehloName(undefined, "c0ffee12", "10.0.0.5")).toBe("[10.0.0.5]");
    expect(ehloName(undefined, "c0ffee12", "::ffff:10.0.0.5")).toBe("[10.0.0.5]");
    expect(ehloName(undefined, "c0ffee12", "fd00::5")).toBe("[IPv6:fd00::5]");
    expect(ehloName(undefined, "10.1.2.3", "10.0.0.5")).toBe("[10.0.0.5]");
    expect(ehloName(undefined, "c0ffee12", undefined)).toBe("[127.0.0.1]");
  });
  it("SMTP_EHLO_NAME accepts a fully qualified name or an address literal, and names itself otherwise", () => {
    for (const ok of ["airlock-1.corp.example", "[10.0.0.5]", "[IPv6:fd00::5]"]) expect(loadConfig({ SMTP_EHLO_NAME: ok }).SMTP_EHLO_NAME).toBe(ok);
    for (const bad of ["airlock", "air lock.corp.example", "-x.corp.example", "a.b\r\nRCPT TO:<x@y>", "[10.0.0.5"]) {
      expect(() => loadConfig({ SMTP_EHLO_NAME: bad }), bad).toThrow(/SMTP_EHLO_NAME: must be a fully qualified host name/);
    }
  });
});
