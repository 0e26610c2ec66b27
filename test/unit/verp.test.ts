import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { Verp } from "../../src/inbound/verp.js";

const secret = "verp-unit-secret-0123456789abcdef0123456789";
const verp = new Verp({ domain: "Bounces.Corp.Example", secret });

describe("VERP addresses", () => {
  it("round-trips bounce and reply addresses", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[0-9a-z][0-9a-z_-]{0,23}$/), fc.integer({ min: 0, max: 0xffffffff }), fc.stringMatching(/^[0-9a-z]{1,16}$/), (id, index, token) => {
        const b = verp.bounceAddress(id, index);
        const r = verp.replyAddress(id, token);
        expect(verp.parse(b)).toEqual({ ok: true, kind: "bounce", messageId: id, index });
        expect(verp.parse(r)).toEqual({ ok: true, kind: "reply", messageId: id, token });
        for (const a of [b, r]) {
          const local = a.slice(0, a.lastIndexOf("@"));
          expect(Buffer.byteLength(local)).toBeLessThanOrEqual(64);
          expect(a).toMatch(/^[a-z0-9+._-]+@bounces\.corp\.example$/);
        }
      }),
    );
  });

  it("has the documented shape", () => {
    expect(verp.bounceAddress("42", 35)).toMatch(/^bounce\+42\.z\.[a-z2-7]{13}@bounces\.corp\.example$/);
    expect(verp.bounceAddress("42", 0xffffffff)).toMatch(/^bounce\+42\.1z141z3\./);
    expect(verp.replyAddress("42", "w1")).toMatch(/^reply\+42\.w1\.[a-z2-7]{13}@bounces\.corp\.example$/);
  });

  it("accepts any case of the domain and of the local part (MTAs may fold it)", () => {
    const a = verp.bounceAddress("42", 1234);
    expect(verp.parse(a.toUpperCase())).toEqual({ ok: true, kind: "bounce", messageId: "42", index: 1234 });
  });

  it("refuses another domain, a subdomain, a tampered index, message or tag, a foreign secret", () => {
    const a = verp.bounceAddress("42", 7);
    const [local] = a.split("@") as [string];
    const tag = local.split(".")[2]!;
    const other = new Verp({ domain: "bounces.corp.example", secret: secret + "x" });
    expect(verp.parse(`${local}@corp.example`)).toEqual({ ok: false, reason: "foreign-domain" });
    expect(verp.parse(`${local}@x.bounces.corp.example`)).toEqual({ ok: false, reason: "foreign-domain" });
    expect(verp.parse(`bounce+42.8.${tag}@bounces.corp.example`)).toEqual({ ok: false, reason: "tag" });
    expect(verp.parse(`bounce+43.7.${tag}@bounces.corp.example`)).toEqual({ ok: false, reason: "tag" });
    expect(verp.parse(`reply+42.7.${tag}@bounces.corp.example`)).toEqual({ ok: false, reason: "tag" });
    expect(verp.parse(other.bounceAddress("42", 7))).toEqual({ ok: false, reason: "tag" });
    const flipped = tag[0] === "a" ? "b" + tag.slice(1) : "a" + tag.slice(1);
    expect(verp.parse(`bounce+42.7.${flipped}@bounces.corp.example`)).toEqual({ ok: false, reason: "tag" });
  });

  it("refuses non-canonical and malformed local parts without throwing", () => {
    const tag = verp.bounceAddress("42", 7).split("@")[0]!.split(".")[2]!;
    const bad = [
      `bounce+42.07.${tag}@bounces.corp.example`, // leading zero: not the address that was issued
      `bounce+42.7.${tag}x@bounces.corp.example`,
      `bounce+42..${tag}@bounces.corp.example`,
      `bounce+.7.${tag}@bounces.corp.example`,
      `bounce+42.2s0000000.${tag}@bounces.corp.example`, // 8 base-36 digits: over 2^32
      `postmaster@bounces.corp.example`,
      `"bounce+42.7.${tag}"@bounces.corp.example`,
      `${"a".repeat(65)}@bounces.corp.example`,
    ];
    for (const a of bad) expect(verp.parse(a), a).toMatchObject({ ok: false, reason: "unknown-local-part" });
    for (const a of ["", "@", "nobody", "a@", "@bounces.corp.example", "x@bad_domain!", "x".repeat(300) + "@bounces.corp.example"]) {
      expect(verp.parse(a), a).toMatchObject({ ok: false, reason: "syntax" });
    }
    expect(verp.parse(undefined as unknown as string)).toMatchObject({ ok: false });
  });

  it("never throws on arbitrary input", () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => void verp.parse(s)));
    fc.assert(fc.property(fc.string({ maxLength: 60 }), (s) => void verp.parse(`${s}@bounces.corp.example`)));
  });

  it("refuses to issue what it could not parse back", () => {
    expect(() => verp.bounceAddress("4.2", 1)).toThrow(RangeError);
    expect(() => verp.bounceAddress("A2", 1)).toThrow(RangeError);
    expect(() => verp.bounceAddress("42", -1)).toThrow(RangeError);
    expect(() => verp.bounceAddress("42", 2 ** 32)).toThrow(RangeError);
    expect(() => verp.replyAddress("42", "")).toThrow(RangeError);
    expect(() => new Verp({ domain: "corp.example", secret: "short" })).toThrow(/32/);
    expect(() => new Verp({ domain: "bad domain", secret })).toThrow(/domain/);
  });
});
