import { describe, expect, it } from "vitest";
import { ClientRate, MAX_TRACKED, clientKey } from "../../src/inbound/client-rate.js";

describe("clientKey", () => {
  it("is the IPv4 address (also IPv4-mapped) or the IPv6 /64", () => {
    expect(clientKey("192.0.2.1")).toBe("192.0.2.1");
    expect(clientKey("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(clientKey("2001:db8:1:2:3:4:5:6")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:db8:1:2::99")).toBe("2001:db8:1:2::/64");
    expect(clientKey("2001:0db8::1")).toBe("2001:db8:0:0::/64");
    expect(clientKey("::1")).toBe("0:0:0:0::/64");
  });
});

describe("ClientRate", () => {
  it("counts one /64 as one client", () => {
    const r = new ClientRate({ burst: 2, now: () => 0 });
    expect(r.take("2001:db8:1:2::1")).toBe(true);
    expect(r.take("2001:db8:1:2::2")).toBe(true);
    expect(r.take("2001:db8:1:2::3")).toBe(false);
    expect(r.take("2001:db8:1:3::1")).toBe(true);
  });

  it("refills at its rate up to the burst, and releases connection slots", () => {
    let now = 0;
    const r = new ClientRate({ burst: 2, perMinute: 60, maxConnections: 1, now: () => now });
    expect(r.connect("192.0.2.1")).toBe(true);
    expect(r.connect("192.0.2.1")).toBe(false);
    r.disconnect("192.0.2.1");
    expect(r.connect("192.0.2.1")).toBe(true);
    expect([r.take("192.0.2.1"), r.take("192.0.2.1"), r.take("192.0.2.1")]).toEqual([true, true, false]);
    now += 1_000;
    expect([r.take("192.0.2.1"), r.take("192.0.2.1")]).toEqual([true, false]);
    now += 3_600_000;
    expect([r.take("192.0.2.1"), r.take("192.0.2.1"), r.take("192.0.2.1")]).toEqual([true, true, false]);
  });

  it("keeps at most MAX_TRACKED clients, so a flood of addresses does not grow memory", () => {
    const r = new ClientRate({ burst: 1, now: () => 0 });
    for (let i = 0; i < MAX_TRACKED + 500; i++) r.take(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`);
    expect((r as unknown as { entries: Map<string, unknown> }).entries.size).toBeLessThanOrEqual(MAX_TRACKED);
  });
});
