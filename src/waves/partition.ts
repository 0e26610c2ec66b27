/**
 * The waves of a staged send over the frozen audience's indexes 0..n-1, pure: the seed cohort,
 * then the canary, then the rest. The rest is never materialised (it is most of a million): it is
 * described by what it is not, and read as ascending index ranges, which is how the fan-out claims.
 *
 * An index in both the seed cohort and the canary belongs to the seed cohort (the earlier wave);
 * duplicates are ignored; an index outside 0..n-1 is a RangeError (a caller's bug, never data).
 */
import { has, toSortedSet } from "./canary.js";

export type WaveName = "seed" | "canary" | "rest";
export const WAVE_ORDER: readonly WaveName[] = ["seed", "canary", "rest"];

export interface WavePlan {
  n: number;
  /** Sorted, distinct. */
  seed: Uint32Array;
  /** Sorted, distinct, none of them in `seed`. */
  canary: Uint32Array;
  /** How many indexes the rest holds: n − seed − canary. */
  restCount: number;
  /** Which wave one index is in. */
  waveOf(index: number): WaveName;
  /** The rest as ascending, disjoint [start, end) ranges. */
  restRanges(): Generator<[number, number]>;
  /** Every index of one wave, ascending. */
  indexesOf(wave: WaveName): Generator<number>;
}

export function partitionWaves(n: number, seedIndexes: ArrayLike<number>, canaryIndexes: ArrayLike<number>): WavePlan {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`n must be an integer in 0..2^32-1, got ${n}`);
  const seed = toSortedSet(seedIndexes, n);
  const canaryAll = toSortedSet(canaryIndexes, n);
  const canary = canaryAll.filter((i) => !has(seed, i));
  // Both sorted and disjoint: their merge is every index that is not in the rest.
  const taken = mergeSorted(seed, canary);

  function* restRanges(): Generator<[number, number]> {
    let start = 0;
    for (const t of taken) {
      if (t > start) yield [start, t];
      start = t + 1;
    }
    if (start < n) yield [start, n];
  }

  return {
    n,
    seed,
    canary,
    restCount: n - taken.length,
    waveOf(index: number): WaveName {
      if (!Number.isInteger(index) || index < 0 || index >= n) throw new RangeError(`index ${index} outside 0..${n - 1}`);
      return has(seed, index) ? "seed" : has(canary, index) ? "canary" : "rest";
    },
    restRanges,
    *indexesOf(wave: WaveName): Generator<number> {
      if (wave === "seed") yield* seed;
      else if (wave === "canary") yield* canary;
      else for (const [a, b] of restRanges()) for (let i = a; i < b; i++) yield i;
    },
  };
}

function mergeSorted(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(a.length + b.length);
  let i = 0;
  let j = 0;
  let w = 0;
  while (i < a.length || j < b.length) out[w++] = j >= b.length || (i < a.length && a[i]! < b[j]!) ? a[i++]! : b[j++]!;
  return out;
}
