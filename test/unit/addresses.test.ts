import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { hasControlChars, normalizeAddress } from "../../src/domain/addresses.js";

const accepted = (raw: string) => {
  const r = normalizeAddress(raw);
  return r.ok ? r.address : null;
};

describe("normalizeAddress", () => {
  it("trims and lower-cases ordinary addresses", () => {
    expect(accepted("  Ann.Lee@Corp.Example ")).toBe("ann.lee@corp.example");
    expect(accepted("o'brien+news@mail.corp.example")).toBe("o'brien+news@mail.corp.example");
    expect(accepted("a!#$%&'*+/=?^_`{|}~-z@x.io")).toBe("a!#$%&'*+/=?^_`{|}~-z@x.io");
    expect(accepted("ops@xn--bcher-kva.example")).toBe("ops@xn--bcher-kva.example");
    expect(accepted("a@b-c.d1")).toBe("a@b-c.d1");
  });

  it.each([
    ["control characters", "ann@corp.example\r\nBcc: all@corp.example"],
    ["a trailing CRLF", "ann@corp.example\r\n"],
    ["a NUL", "ann\u0000@corp.example"],
    ["DEL", "ann\u007f@corp.example"],
    ["a quoted local part", '"a,b@evil.com"@corp.com'],
    ["a comma", "a@corp.example,b@corp.example"],
    ["angle brackets", "Ann <ann@corp.example>"],
    ["inner whitespace", "ann lee@corp.example"],
    ["two @", "a@b@corp.example"],
    ["no @", "corp.example"],
    ["an empty string", "   "],
    ["an empty local part", "@corp.example"],
    ["an empty domain", "ann@"],
    ["a dotless domain", "ann@localhost"],
    ["an empty label", "ann@corp..example"],
    ["a trailing dot in the domain", "ann@corp.example."],
    ["a leading hyphen in a label", "ann@-corp.example"],
    ["a trailing hyphen in a label", "ann@corp-.example"],
    ["an underscore in the domain", "ann@my_corp.example"],
    ["a domain literal", "ann@[10.0.0.1]"],
    ["a leading dot", ".ann@corp.example"],
    ["a trailing dot", "ann.@corp.example"],
    ["a double dot", "ann..lee@corp.example"],
    ["a local part of 65 characters", `${"a".repeat(65)}@corp.example`],
    ["more than 254 characters", `${"a".repeat(64)}@${"b".repeat(60)}.${"c".repeat(60)}.${"d".repeat(60)}.example`],
    ["a label of 64 characters", `ann@${"b".repeat(64)}.example`],
    ["a non-ASCII letter", "ännä@corp.example"],
    ["the Kelvin sign, which lower-cases to ASCII k", "\u212Aate@corp.example"],
    ["a backslash", "a\\b@corp.example"],
    ["parentheses (comments)", "ann(x)@corp.example"],
    ["a semicolon", "a@corp.example;b@corp.example"],
  ])("refuses %s", (_label, raw) => {
    const r = normalizeAddress(raw);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).toMatch(/\w/);
  });

  it("accepts the longest allowed local part and total length", () => {
    expect(accepted(`${"a".repeat(64)}@corp.example`)).not.toBeNull();
    const address = `${"a".repeat(64)}@${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(58)}.io`;
    expect(address.length).toBe(254);
    expect(accepted(address)).toBe(address);
    expect(accepted(`${address}x`)).toBeNull(); // 255 characters, every part otherwise valid
  });

  it("never throws, whatever the input", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 300 }), (s) => {
        normalizeAddress(s);
      }),
      { numRuns: 1000 },
    );
  });

  it("is idempotent, and its output contains nothing that could inject a recipient or header", () => {
    const atom = fc.string({ unit: fc.constantFrom(..."aZ09.!#$%&'*+/=?^_`{|}~-,\"<>@ \r\n\t\u0000"), minLength: 0, maxLength: 20 });
    const candidate = fc.oneof(
      fc.tuple(atom, atom).map(([l, d]) => `${l}@${d}`),
      fc.tuple(atom, atom, atom).map(([l, d, t]) => `${l}@${d}.${t}`),
      fc.string({ unit: "binary", maxLength: 80 }),
    );
    fc.assert(
      fc.property(candidate, (s) => {
        const r = normalizeAddress(s);
        if (!r.ok) return;
        expect(normalizeAddress(r.address)).toEqual(r);
        expect(r.address).not.toMatch(/[\r\n,"<>\s\x00-\x1f\x7f]/);
        expect(r.address).toBe(r.address.toLowerCase());
        expect(r.address.split("@")).toHaveLength(2);
      }),
      { numRuns: 3000 },
    );
  });

  it("accepts every address built from the allowed grammar", () => {
    const atomChar = fc.constantFrom(..."abcxyz0189!#$%&'*+/=?^_`{|}~-");
    const atomText = fc.string({ unit: atomChar, minLength: 1, maxLength: 10 });
    const local = fc.array(atomText, { minLength: 1, maxLength: 4 }).map((a) => a.join("."));
    const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
    const domain = fc.array(label, { minLength: 2, maxLength: 4 }).map((a) => a.join("."));
    fc.assert(
      fc.property(local, domain, fc.boolean(), (l, d, upper) => {
        const raw = `${l}@${d}`;
        const r = normalizeAddress(upper ? ` ${raw.toUpperCase()} ` : raw);
        expect(r).toEqual({ ok: true, address: raw });
      }),
      { numRuns: 1000 },
    );
  });
});

describe("hasControlChars", () => {
  it("flags C0 controls and DEL, nothing else", () => {
    expect(hasControlChars("Policy\r\nBcc: x")).toBe(true);
    expect(hasControlChars("tab\there")).toBe(true);
    expect(hasControlChars("\u0000")).toBe(true);
    expect(hasControlChars("\u007f")).toBe(true);
    expect(hasControlChars("Équipe RH – rappel ✓")).toBe(false);
    expect(hasControlChars("")).toBe(false);
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 50 }), (s) => {
        expect(hasControlChars(s)).toBe([...s].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f));
      }),
    );
  });
});
