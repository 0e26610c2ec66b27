/** bench/service.ts runQueueWaits: the summary of Redis's wait for a core behind recallUnderLoad.redisCpuWait. */
import { describe, expect, it } from "vitest";
import { runQueueWaits } from "../../bench/service.js";

describe("runQueueWaits", () => {
  it("sums the slots between cumulative readings, and names the longest and those over 10 ms", () => {
    // Cumulative ms since the thread started: slots of 2, 12.5, 0 and 30.25 ms (the last one partial).
    expect(runQueueWaits([100, 102, 114.5, 114.5, 144.75])).toEqual({ ms: 44.8, slots: 4, longestSlotMs: 30.3, slotsOver10Ms: 2 });
  });

  it("is null with fewer than two readings (the kernel did not tell, or nothing was read)", () => {
    expect(runQueueWaits([])).toBeNull();
    expect(runQueueWaits([5])).toBeNull();
  });
});
