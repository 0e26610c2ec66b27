import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { linkMac, parseToken, type LinkGrant } from "../../src/links/link-tokens.js";

const secret = "unit-test-secret-0123456789abcdef0123456789";
const grant: LinkGrant = { user: "approver1@corp.example", message: "42", revision: 3, action: "approve", expiresAt: 1_800_000_000_000 };
const id = "AAAAAAAAAAAAAAAAAAAAAA";

describe("link token MAC", () => {
  it("is 256 bits in base64url and stable for the same grant", () => {
    const mac = linkMac(secret, id, grant);
    expect(mac).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(linkMac(secret, id, { ...grant })).toBe(mac);
  });

  it("changes with every bound field, the id and the secret", () => {
    const mac = linkMac(secret, id, grant);
    const variants: Array<[string, string]> = [
      ["user", linkMac(secret, id, { ...grant, user: "approver2@corp.example" })],
      ["message", linkMac(secret, id, { ...grant, message: "43" })],
      ["revision", linkMac(secret, id, { ...grant, revision: 4 })],
      ["action", linkMac(secret, id, { ...grant, action: "recall" })],
      ["expiresAt", linkMac(secret, id, { ...grant, expiresAt: grant.expiresAt + 1 })],
      ["id", linkMac(secret, "BAAAAAAAAAAAAAAAAAAAAA", grant)],
      ["secret", linkMac(secret + "x", id, grant)],
    ];
    for (const [field, other] of variants) expect(other, field).not.toBe(mac);
  });

  it("cannot be made to collide by moving text between fields", () => {
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), fc.string({ minLength: 1 }), (u1, u2) => {
        fc.pre(u1 !== u2 && !u1.includes("\n") && !u2.includes("\n"));
        expect(linkMac(secret, id, { ...grant, user: u1 })).not.toBe(linkMac(secret, id, { ...grant, user: u2 }));
      }),
    );
  });
});

describe("parseToken", () => {
  it("accepts exactly <22 base64url>.<43 base64url>", () => {
    const mac = linkMac(secret, id, grant);
    expect(parseToken(`${id}.${mac}`)).toEqual({ id, mac });
    for (const bad of ["", id, `${id}.`, `.${mac}`, `${id}.${mac}.x`, `${id}x.${mac}`, `${id}.${mac}x`, `${id}.${mac.slice(1)}`, `${id.slice(0, 21)}+.${mac}`, `${id}.${mac}\n`]) {
      expect(parseToken(bad), JSON.stringify(bad)).toBeNull();
    }
  });
});
