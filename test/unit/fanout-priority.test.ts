import { describe, expect, it } from "vitest";
import { fanoutPriority } from "../../src/queues/scheduler.js";

describe("fanoutPriority", () => {
  it("puts a correction first, then originals by the size of their audience", () => {
    expect(fanoutPriority("correction", 1_000_000)).toBe(0);
    expect(fanoutPriority("original", 1)).toBe(1);
    expect(fanoutPriority("original", 900)).toBe(11);
    expect(fanoutPriority("original", 1_000_000)).toBe(21);
    // Within BullMQ's range (1 .. 2^21) whatever the size.
    expect(fanoutPriority("original", 0)).toBe(1);
    expect(fanoutPriority("original", 2 ** 40)).toBeLessThan(2 ** 21);
  });
});
