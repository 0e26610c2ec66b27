/**
 * streamResolution (service/directory-audiences.ts): the bridge from the resolver's batch callback to
 * the upload's records. A batch is handed over only when the consumer reads it; a consumer that
 * stops early stops the resolver (its pending batch is refused) instead of leaving it waiting.
 */
import { describe, expect, it } from "vitest";
import type { BatchCallback, GroupResolution } from "../../src/directory/ldap-directory.js";
import { streamResolution } from "../../src/service/directory-audiences.js";

const summary = { group: "cn=g", resolvedAt: "2026-12-01T00:00:00.000Z", recipients: 0 } as GroupResolution;

/** A resolver of `pages` batches that records how far it got and how it ended. */
function resolver(pages: string[][]) {
  const seen = { delivered: 0, ended: "" };
  const run = async (onBatch: BatchCallback) => {
    try {
      for (const p of pages) {
        await onBatch(p);
        seen.delivered += 1;
      }
      seen.ended = "done";
      return summary;
    } catch (e) {
      seen.ended = `stopped: ${(e as Error).message}`;
      throw e;
    }
  };
  return { run, seen };
}

describe("streamResolution", () => {
  it("yields every address in order, one batch at a time, then the result", async () => {
    const r = resolver([["a@x", "b@x"], ["c@x"]]);
    const s = streamResolution(r.run);
    expect(() => s.result()).toThrow(/before the resolution ended/);
    const out: string[] = [];
    for await (const rec of s.records) {
      out.push(rec.email);
      // The resolver is not ahead of the consumer by more than the batch being read.
      expect(r.seen.delivered).toBeLessThanOrEqual(out.length === 3 ? 2 : 1);
    }
    expect(out).toEqual(["a@x", "b@x", "c@x"]);
    expect(r.seen.ended).toBe("done");
    expect(s.result()).toBe(summary);
  });

  it("passes the resolver's failure to the consumer", async () => {
    const s = streamResolution(async (onBatch) => {
      await onBatch(["a@x"]);
      throw new Error("directory gone");
    });
    const out: string[] = [];
    await expect(
      (async () => {
        for await (const rec of s.records) out.push(rec.email);
      })(),
    ).rejects.toThrow("directory gone");
    expect(out).toEqual(["a@x"]);
  });

  it("stops the resolver when the consumer stops early, and ends only once it has stopped", async () => {
    const r = resolver([["a@x"], ["b@x"], ["c@x"]]);
    const s = streamResolution(r.run);
    for await (const rec of s.records) {
      if (rec.email === "b@x") break; // a refusal in the store, say
    }
    // The loop's end awaited the resolver: it did not read the third page, and it has ended.
    expect(r.seen.ended).toMatch(/^stopped: /);
    expect(r.seen.delivered).toBe(1);
  }, 5000); // a resolver left waiting would hang the loop's end: fail in seconds, not at vitest's default
});
