import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { allocate, canarySize, chooseCanary, seedKeys, type RecipientFacts } from "../../src/waves/canary.js";
import { partitionWaves } from "../../src/waves/partition.js";

/** An audience of n where recipient i is in domain i mod domains and department i mod depts (none when depts is 0). */
function facts(n: number, domains: number, depts: number, order: "asc" | "desc" = "asc") {
  return function* (): Generator<RecipientFacts> {
    for (let j = 0; j < n; j++) {
      const i = order === "asc" ? j : n - 1 - j;
      yield { index: i, domain: `d${i % domains}.example`, department: depts ? `dept-${i % depts}` : undefined };
    }
  };
}

function expand(plan: ReturnType<typeof partitionWaves>): number[] {
  const rest: number[] = [];
  for (const [a, b] of plan.restRanges()) for (let i = a; i < b; i++) rest.push(i);
  return [...plan.seed, ...plan.canary, ...rest];
}

describe("canarySize", () => {
  it("is 1% rounded up, at least 50, at most the eligible", () => {
    expect(canarySize(1_000_000, 1_000_000)).toBe(10_000);
    expect(canarySize(100_001, 100_001)).toBe(1_001);
    expect(canarySize(1_000, 1_000)).toBe(50);
    expect(canarySize(30, 28)).toBe(28);
    expect(canarySize(10_000, 10_000, 0.5, 10)).toBe(50);
    expect(() => canarySize(10, 10, 0)).toThrow(RangeError);
    expect(() => canarySize(10, 10, 101)).toThrow(RangeError);
  });
});

describe("chooseCanary", () => {
  it("gives the same sample for the same seed, whatever order the facts come in, and another for another seed", async () => {
    const a = await chooseCanary({ n: 20_000, seed: "s1", facts: facts(20_000, 3, 7) });
    const b = await chooseCanary({ n: 20_000, seed: "s1", facts: facts(20_000, 3, 7, "desc") });
    const c = await chooseCanary({ n: 20_000, seed: "s2", facts: facts(20_000, 3, 7) });
    expect(a.length).toBe(200);
    expect([...b]).toEqual([...a]);
    expect([...c]).not.toEqual([...a]);
  });

  it("reads the facts from an async source (streamed by index ranges)", async () => {
    const source = async function* () {
      for (let start = 0; start < 5_000; start += 1_000) {
        await Promise.resolve(); // one Redis round trip per range in real use
        for (let i = start; i < start + 1_000; i++) yield { index: i, domain: i < 4_000 ? "corp.example" : "corp-eu.example" };
      }
    };
    const sample = await chooseCanary({ n: 5_000, seed: "x", facts: source });
    expect(sample.length).toBe(50);
    // 20% of the audience is in corp-eu.example: exactly 10 of 50 places.
    expect([...sample].filter((i) => i >= 4_000).length).toBe(10);
  });

  it("is reproducible from its seed, exact in size, sorted, distinct, inside the audience, outside the seed cohort, and proportional per stratum", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 3_000 }),
        fc.integer({ min: 1, max: 5 }),
        fc.integer({ min: 0, max: 9 }),
        fc.double({ min: 0.1, max: 100, noNaN: true }),
        fc.integer({ min: 0, max: 80 }),
        fc.string({ minLength: 1, maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        async (n, domains, depts, percent, minimum, seed, rawExclude) => {
          const exclude = rawExclude.map((x) => x % n);
          const distinctExcluded = new Set(exclude).size;
          const sample = await chooseCanary({ n, seed, facts: facts(n, domains, depts), percent, minimum, exclude });
          // The same seed gives the same sample, even read in the opposite order.
          const again = await chooseCanary({ n, seed, facts: facts(n, domains, depts, "desc"), percent, minimum, exclude });
          expect([...again]).toEqual([...sample]);
          expect(sample.length).toBe(canarySize(n, n - distinctExcluded, percent, minimum));
          for (let i = 0; i < sample.length; i++) {
            expect(sample[i]!).toBeLessThan(n);
            if (i > 0) expect(sample[i]!).toBeGreaterThan(sample[i - 1]!);
            expect(exclude).not.toContain(sample[i]);
          }
          // Each stratum within one place of its exact share k × e_s / E.
          const strata = new Map<string, { eligible: number; chosen: number }>();
          const excluded = new Set(exclude);
          const chosen = new Set(sample);
          for (const f of facts(n, domains, depts)()) {
            if (excluded.has(f.index)) continue;
            const key = `${f.domain}/${f.department ?? ""}`;
            const s = strata.get(key) ?? { eligible: 0, chosen: 0 };
            s.eligible++;
            if (chosen.has(f.index)) s.chosen++;
            strata.set(key, s);
          }
          const E = n - distinctExcluded;
          for (const s of strata.values()) {
            const share = (sample.length * s.eligible) / E;
            expect(s.chosen).toBeGreaterThanOrEqual(Math.floor(share));
            expect(s.chosen).toBeLessThanOrEqual(Math.ceil(share));
          }
        },
      ),
      { numRuns: 60 },
    );
  });

  it("chooses every index about equally often over many seeds (no index favoured by the hash)", async () => {
    const n = 1_000;
    const hits = new Uint32Array(n);
    const seeds = 400;
    for (let s = 0; s < seeds; s++) for (const i of await chooseCanary({ n, seed: `seed-${s}`, facts: facts(n, 1, 0) })) hits[i]!++;
    // Each index is chosen with p = 50/1000 per seed: mean 20, sd ≈ 4.4. Bounds at ~±4.5 sd over
    // 1,000 indexes fail by chance with probability < 1%; a broken hash (fixed or clustered
    // choices) puts indexes at 0 or 400.
    expect(Math.min(...hits)).toBeGreaterThanOrEqual(1);
    expect(Math.max(...hits)).toBeLessThanOrEqual(40);
    const firstHalf = hits.subarray(0, 500).reduce((a, b) => a + b, 0);
    expect(Math.abs(firstHalf - (seeds * 50) / 2)).toBeLessThan(600);
  });

  it("refuses facts that miss an index, repeat one, leave the audience or change between readings", async () => {
    const n = 100;
    const missing = function* () {
      for (let i = 1; i < n; i++) yield { index: i, domain: "a.example" };
    };
    const twice = function* () {
      for (let i = 0; i < n; i++) yield { index: i === 5 ? 4 : i, domain: "a.example" };
    };
    const outside = function* () {
      for (let i = 0; i < n; i++) yield { index: i + 1, domain: "a.example" };
    };
    let reads = 0;
    const changing = function* () {
      reads++;
      for (let i = 0; i < n; i++) yield { index: i, domain: reads === 1 || i > 10 ? "a.example" : "b.example" };
    };
    await expect(chooseCanary({ n, seed: "s", facts: missing })).rejects.toThrow(/cover 99 of 100/);
    await expect(chooseCanary({ n, seed: "s", facts: twice })).rejects.toThrow(/twice/);
    await expect(chooseCanary({ n, seed: "s", facts: outside })).rejects.toThrow(RangeError);
    await expect(chooseCanary({ n, seed: "s", facts: changing })).rejects.toThrow(/changed/);
    await expect(chooseCanary({ n, seed: "", facts: facts(n, 1, 0) })).rejects.toThrow(/seed/);
  });

  it("chooses 10,000 of a million over 50 domains × 40 departments within a few seconds", async () => {
    const t0 = performance.now();
    const sample = await chooseCanary({ n: 1_000_000, seed: "big", facts: facts(1_000_000, 50, 40) });
    expect(sample.length).toBe(10_000);
    // 200 strata (i mod 50, i mod 40 repeat every 200 indexes) of 5,000 recipients each own exactly 50 places.
    const perStratum = new Map<number, number>();
    for (const i of sample) perStratum.set(i % 200, (perStratum.get(i % 200) ?? 0) + 1); // i mod lcm(50, 40)
    expect(perStratum.size).toBe(200);
    for (const c of perStratum.values()) expect(c).toBe(50);
    // Generous on a shared 2-core machine: about 1 s alone here.
    expect(performance.now() - t0).toBeLessThan(15_000);
  });
});

describe("allocate (largest remainder)", () => {
  it("gives exactly k, ties broken by the seed and not by the strata's order", () => {
    const keys = seedKeys("t");
    const three = new Map([["a", 1], ["b", 1], ["c", 1]]);
    const given = allocate(three, 2, keys);
    expect([...given.values()].reduce((a, b) => a + b, 0)).toBe(2);
    const reversed = allocate(new Map([...three].reverse()), 2, keys);
    for (const [k, v] of given) expect(reversed.get(k)).toBe(v);
    // Shares 2.8, 0.8, 0.4: floors 2, 0, 0, and the two places left go to the largest remainders.
    expect(allocate(new Map([["a", 7], ["b", 2], ["c", 1]]), 4, keys)).toEqual(new Map([["a", 3], ["b", 1], ["c", 0]]));
  });
});

describe("partitionWaves", () => {
  it("partitions the audience exactly: no index in two waves, none left out", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 2_000 }),
        fc.array(fc.nat(), { maxLength: 60 }),
        fc.array(fc.nat(), { maxLength: 200 }),
        (n, rawSeed, rawCanary) => {
          const seed = n ? rawSeed.map((x) => x % n) : [];
          const canary = n ? rawCanary.map((x) => x % n) : [];
          const plan = partitionWaves(n, seed, canary);
          const all = expand(plan);
          expect(all.length).toBe(n);
          expect([...all].sort((a, b) => a - b)).toEqual(Array.from({ length: n }, (_, i) => i));
          expect(plan.seed.length + plan.canary.length + plan.restCount).toBe(n);
          for (const i of seed) expect(plan.waveOf(i)).toBe("seed");
          for (const i of canary) expect(plan.waveOf(i)).toBe(seed.includes(i) ? "seed" : "canary");
          for (const i of plan.indexesOf("rest")) expect(plan.waveOf(i)).toBe("rest");
        },
      ),
    );
  });

  it("with a canary chosen by chooseCanary outside the seed cohort, the canary wave is the whole sample", async () => {
    const seedCohort = [0, 17, 999];
    const sample = await chooseCanary({ n: 1_000, seed: "p", facts: facts(1_000, 4, 3), exclude: seedCohort });
    const plan = partitionWaves(1_000, seedCohort, sample);
    expect([...plan.canary]).toEqual([...sample]);
    expect(plan.restCount).toBe(1_000 - 3 - 50);
  });

  it("refuses indexes outside the audience", () => {
    expect(() => partitionWaves(10, [10], [])).toThrow(RangeError);
    expect(() => partitionWaves(10, [], [-1])).toThrow(RangeError);
    expect(() => partitionWaves(10, [], [1.5])).toThrow(RangeError);
    expect(() => partitionWaves(10, [], []).waveOf(10)).toThrow(RangeError);
  });
});
