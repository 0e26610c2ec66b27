/** The audit trail's two links (audit/chain.ts): the unkeyed hash and the keyed seal. */
import { describe, expect, it } from "vitest";
import { entryHash, entrySeal } from "../../src/audit/chain.js";

const entry = { message: "m1", revision: "2", actor: "ann@corp.example", action: "approve", from: "pending_approval", to: "scheduled", at: "1700000000000", detail: "{}", prev: "p", hash: "h" };
const secret = "s".repeat(32);

describe("entrySeal", () => {
  it("changes with every field, the entry id, the previous seal and the secret", () => {
    const base = entrySeal(secret, "prev-seal", "1-0", entry);
    expect(base).toMatch(/^[0-9a-f]{64}$/);
    for (const k of Object.keys(entry) as Array<keyof typeof entry>) expect(entrySeal(secret, "prev-seal", "1-0", { ...entry, [k]: `${entry[k]}x` }), k).not.toBe(base);
    expect(entrySeal(secret, "prev-seal", "1-1", entry)).not.toBe(base);
    expect(entrySeal(secret, "other", "1-0", entry)).not.toBe(base);
    expect(entrySeal("t".repeat(32), "prev-seal", "1-0", entry)).not.toBe(base);
  });

  it("cannot be matched by moving text from one field to the next", () => {
    // With a plain separator these two would read alike ("a\nb" + "c" vs "a" + "b\nc").
    expect(entrySeal(secret, "", "1-0", { ...entry, actor: "a\nb", action: "c" })).not.toBe(entrySeal(secret, "", "1-0", { ...entry, actor: "a", action: "b\nc" }));
  });
});

describe("entryHash", () => {
  it("is the rule the Lua scripts follow: SHA-1 of prev and the fields, newline-joined", async () => {
    const { createHash } = await import("node:crypto");
    const body = ["m1", "2", "ann@corp.example", "approve", "pending_approval", "scheduled", "1700000000000", "{}"].join("\n");
    expect(entryHash("p", entry)).toBe(createHash("sha1").update(`p\n${body}`).digest("hex"));
  });
});
