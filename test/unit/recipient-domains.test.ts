import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import {
  domainOf,
  isAllowedDomain,
  nameSome,
  OTHER_DOMAINS,
  outsideAddresses,
  outsideDomains,
  parseDomainList,
} from "../../src/domain/recipient-domains.js";

const allowed = ["corp.example", "eu.corp.example"];

describe("domainOf", () => {
  it("answers the lower-cased part after the @", () => {
    expect(domainOf("Ann@Corp.Example")).toBe("corp.example");
    expect(domainOf("no-at-sign")).toBe("");
  });
});

describe("isAllowedDomain", () => {
  it("matches the domain exactly, whatever its case", () => {
    expect(isAllowedDomain("ann@corp.example", allowed)).toBe(true);
    expect(isAllowedDomain("ANN@CORP.EXAMPLE", allowed)).toBe(true);
    expect(isAllowedDomain("ann@eu.corp.example", allowed)).toBe(true);
  });

  it("does not allow subdomains, look-alikes or a domain merely ending the same", () => {
    expect(isAllowedDomain("ann@us.corp.example", allowed)).toBe(false);
    expect(isAllowedDomain("ann@evilcorp.example", allowed)).toBe(false);
    expect(isAllowedDomain("ann@corp.example.evil.com", allowed)).toBe(false);
    expect(isAllowedDomain("ann@gmail.com", allowed)).toBe(false);
  });

  it("allows any domain when the setting is unset, and none when the address has no domain", () => {
    expect(isAllowedDomain("ann@gmail.com", undefined)).toBe(true);
    expect(isAllowedDomain("ann", allowed)).toBe(false);
  });
});

describe("outsideAddresses", () => {
  it("counts every address outside and names the first ones, in order", () => {
    const addresses = ["a@corp.example", "b@gmail.com", "c@corp.example", "d@x.example", "e@y.example"];
    expect(outsideAddresses(addresses, allowed, 2)).toEqual({ count: 3, first: ["b@gmail.com", "d@x.example"] });
    expect(outsideAddresses(addresses, allowed)).toEqual({ count: 3, first: ["b@gmail.com", "d@x.example", "e@y.example"] });
  });

  it("bounds the names, not the count, and reads any iterable once", () => {
    function* many() {
      for (let i = 0; i < 10_000; i++) yield `p${i}@outside.example`;
    }
    const r = outsideAddresses(many(), allowed);
    expect(r.count).toBe(10_000);
    expect(r.first).toHaveLength(20);
    expect(r.first[0]).toBe("p0@outside.example");
  });

  it("finds nothing outside when any domain is allowed", () => {
    expect(outsideAddresses(["b@gmail.com"], undefined)).toEqual({ count: 0, first: [] });
  });
});

describe("outsideDomains", () => {
  it("answers the recorded domains outside, and always the ones not recorded", () => {
    const recorded = [
      { domain: "corp.example", count: 90 },
      { domain: "gmail.com", count: 3 },
      { domain: OTHER_DOMAINS, count: 2 },
    ];
    expect(outsideDomains(recorded, allowed)).toEqual([
      { domain: "gmail.com", count: 3 },
      { domain: OTHER_DOMAINS, count: 2 },
    ]);
    expect(outsideDomains(recorded, undefined)).toEqual([]);
    expect(outsideDomains([{ domain: "corp.example", count: 1 }], allowed)).toEqual([]);
  });
});

describe("nameSome", () => {
  it("names a few and counts the rest", () => {
    expect(nameSome(["a", "b"], 2)).toBe("a, b");
    expect(nameSome(["a", "b", "c"], 10, 2)).toBe("a, b and 8 more");
  });
});

describe("parseDomainList", () => {
  it("lower-cases, trims, deduplicates and ignores empty entries", () => {
    expect(parseDomainList(" Corp.Example, eu.corp.example,,corp.example ")).toEqual({ ok: true, domains: ["corp.example", "eu.corp.example"] });
    expect(parseDomainList("xn--bcher-kva.example")).toEqual({ ok: true, domains: ["xn--bcher-kva.example"] });
  });

  it.each([
    ["no domain at all", " , ", /names no domain/],
    ["an address", "ann@corp.example", /not a domain: give the domain alone/],
    ["a leading @", "@corp.example", /not a domain/],
    ["a wildcard", "*.corp.example", /wildcards are not supported/],
    ["a name without a dot", "corp", /"corp" is not a domain name .*without a dot/],
    ["an empty label", "corp..example", /empty domain label/],
    ["non-ASCII", "bücher.example", /non-ASCII/],
    ["a space inside", "corp example.com", /whitespace/],
  ])("refuses %s", (_what, raw, reason) => {
    const r = parseDomainList(raw);
    expect(r.ok).toBe(false);
    expect(r.ok ? "" : r.reason).toMatch(reason);
  });
});

describe("ALLOWED_RECIPIENT_DOMAINS in the configuration", () => {
  it("is parsed into a lower-cased list, and unset (or empty) allows any domain", () => {
    expect(loadConfig({ ALLOWED_RECIPIENT_DOMAINS: "Corp.Example,eu.corp.example" }).ALLOWED_RECIPIENT_DOMAINS).toEqual(["corp.example", "eu.corp.example"]);
    expect(loadConfig({}).ALLOWED_RECIPIENT_DOMAINS).toBeUndefined();
    expect(loadConfig({ ALLOWED_RECIPIENT_DOMAINS: "" }).ALLOWED_RECIPIENT_DOMAINS).toBeUndefined();
  });

  it("refuses a bad entry with a message naming the variable", () => {
    expect(() => loadConfig({ ALLOWED_RECIPIENT_DOMAINS: "corp.example,corp" })).toThrow(ConfigError);
    expect(() => loadConfig({ ALLOWED_RECIPIENT_DOMAINS: "corp.example,corp" })).toThrow(/ALLOWED_RECIPIENT_DOMAINS: "corp" is not a domain name/);
  });
});
