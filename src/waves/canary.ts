/**
 * The canary sample of a staged send (issue 16), pure apart from reading the recipient facts.
 *
 * The canary is `max(minimum, ceil(n × percent / 100))` recipients of the frozen audience (never
 * more than are eligible), chosen at random but reproducibly from a recorded seed, and spread over
 * strata: a stratum is one (domain, department) pair, the department "" when unknown.
 *
 * Stratification rule (largest remainder, Hamilton): each stratum s of e_s eligible recipients
 * (E in all) is owed k × e_s / E places; it gets the integer part, and the k − Σ floor places left
 * go one each to the strata with the largest fractional parts (exact integer arithmetic), ties
 * broken by a seeded hash of the stratum's key. So the total is exactly k and no stratum is more
 * than one place away from its proportional share.
 *
 * Within a stratum the k_s recipients are those of smallest seeded hash of their index (bottom-k
 * sampling): a uniform sample that depends only on (seed, index, stratum), never on the order the
 * facts arrive in, so reading the audience again in another order gives the same sample.
 *
 * Memory: the facts are read twice (once to count strata, once to choose) and never kept; what is
 * held is one bit per index (to check every index comes exactly once), the strata counts (capped
 * at MAX_STRATA) and the k chosen indexes. A million-recipient audience with a 1% canary holds
 * ~125 kB of bitmap and 10,000 heap entries.
 */
import { createHash, randomBytes } from "node:crypto";

/** What is known of one recipient, by its index in the frozen audience. */
export interface RecipientFacts {
  index: number;
  /** The address's domain (compared lower-cased). */
  domain: string;
  /** The department when the audience gives one. */
  department?: string | undefined;
}

export type FactsSource = () => AsyncIterable<RecipientFacts> | Iterable<RecipientFacts>;

export interface CanaryOptions {
  /** Frozen audience size: the facts must cover indexes 0..n-1, each exactly once. */
  n: number;
  /** The recorded seed (see newCanarySeed). */
  seed: string;
  /** Read twice; each call must yield the same facts (in any order). */
  facts: FactsSource;
  /** CANARY_PERCENT: share of the audience in the canary, 0 < p ≤ 100. Default 1. */
  percent?: number;
  /** The smallest canary (as long as enough recipients are eligible). Default 50. */
  minimum?: number;
  /** Indexes that cannot be in the canary (the seed cohort, already an earlier wave); sorted or not. */
  exclude?: ArrayLike<number>;
}

export const DEFAULT_CANARY_PERCENT = 1;
export const DEFAULT_CANARY_MINIMUM = 50;
/**
 * Distinct (domain, department) strata kept; recipients of any stratum met after that share one
 * overflow stratum. Bounds memory when departments are free text (a million recipients with a
 * unique "department" each would otherwise keep a million keys); 20,000 strata are already twice
 * the places of a 1% canary of a million, so more strata could not each get a place anyway.
 */
export const MAX_STRATA = 20_000;
const OVERFLOW_STRATUM = "\u0000overflow";

/** A fresh seed to record with the message: 128 random bits, hex. */
export function newCanarySeed(): string {
  return randomBytes(16).toString("hex");
}

/** The canary size for an audience of n with `eligible` recipients outside the seed cohort. */
export function canarySize(n: number, eligible: number, percent = DEFAULT_CANARY_PERCENT, minimum = DEFAULT_CANARY_MINIMUM): number {
  checkCount("n", n);
  checkCount("eligible", eligible);
  checkCount("minimum", minimum);
  if (!(percent > 0 && percent <= 100)) throw new RangeError(`percent must be in (0, 100], got ${percent}`);
  // Rounding up: "1%" of 120 recipients is 2 people, not 1; the epsilon keeps 1% of 100 at 1
  // (100 × 1 / 100 is 1.0000000000000002 in floating point for some percents).
  const share = Math.ceil((n * percent) / 100 - 1e-9);
  return Math.min(eligible, Math.max(minimum, share));
}

/** Chooses the canary: sorted, distinct indexes. Throws when the facts do not cover 0..n-1 exactly once. */
export async function chooseCanary(o: CanaryOptions): Promise<Uint32Array> {
  checkCount("n", o.n);
  const keys = seedKeys(o.seed);
  const excluded = toSortedSet(o.exclude ?? [], o.n);

  // Pass 1: count eligible recipients per stratum, and check the facts cover the audience.
  const counts = new Map<string, number>();
  const seen = new Uint8Array(Math.ceil(o.n / 8));
  let total = 0;
  for await (const f of o.facts()) {
    checkFact(f, o.n);
    const bit = 1 << (f.index & 7);
    if (seen[f.index >>> 3]! & bit) throw new Error(`recipient facts list index ${f.index} twice`);
    seen[f.index >>> 3]! |= bit;
    total++;
    if (has(excluded, f.index)) continue;
    let key = stratumKey(f);
    if (!counts.has(key) && counts.size >= MAX_STRATA) key = OVERFLOW_STRATUM;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  if (total !== o.n) throw new Error(`recipient facts cover ${total} of ${o.n} indexes`);
  const eligible = o.n - excluded.length;
  const k = canarySize(o.n, eligible, o.percent, o.minimum);
  const quotas = allocate(counts, k, keys);

  // Pass 2: the k_s smallest (hash, index) of each stratum.
  const heaps = new Map<string, MaxHeap>();
  for (const [key, q] of quotas) if (q > 0) heaps.set(key, new MaxHeap(q));
  const recount = new Map<string, number>();
  for await (const f of o.facts()) {
    checkFact(f, o.n);
    if (has(excluded, f.index)) continue;
    let key = stratumKey(f);
    if (!counts.has(key)) key = OVERFLOW_STRATUM;
    recount.set(key, (recount.get(key) ?? 0) + 1);
    heaps.get(key)?.offer(indexHash(keys, f.index), f.index);
  }
  for (const [key, c] of counts) {
    if (recount.get(key) !== c) throw new Error("recipient facts changed between the two readings");
  }
  const out = new Uint32Array(k);
  let i = 0;
  for (const h of heaps.values()) for (const idx of h.indexes()) out[i++] = idx;
  if (i !== k) throw new Error(`canary of ${i} instead of ${k}`); // cannot happen: quotas ≤ counts
  return out.sort();
}

/**
 * Largest-remainder allocation of k places over strata (exported for its tests). Quotas are
 * exact: k × e_s is computed as a BigInt (it can pass 2^53 for audiences over ~95 million).
 */
export function allocate(counts: ReadonlyMap<string, number>, k: number, keys: SeedKeys): Map<string, number> {
  let total = 0;
  for (const c of counts.values()) total += c;
  const out = new Map<string, number>();
  if (total === 0 || k === 0) {
    for (const key of counts.keys()) out.set(key, 0);
    return out;
  }
  const rows = [...counts].map(([key, c]) => {
    const product = BigInt(k) * BigInt(c);
    return { key, floor: Number(product / BigInt(total)), rem: Number(product % BigInt(total)), tie: stringHash(keys, key) };
  });
  let given = 0;
  for (const r of rows) given += r.floor;
  // Largest remainder first; equal remainders by seeded hash, then key, so the order never
  // depends on the order the strata were met in.
  rows.sort((a, b) => b.rem - a.rem || a.tie - b.tie || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  for (const r of rows) out.set(r.key, r.floor + (given < k && r.rem > 0 ? (given++, 1) : 0));
  return out;
}

export interface SeedKeys {
  k: Uint32Array;
}

/** Four 32-bit keys from the seed text (SHA-256): any seed string works, the same one always gives the same keys. */
export function seedKeys(seed: string): SeedKeys {
  if (typeof seed !== "string" || seed.length === 0) throw new RangeError("the canary seed must be a non-empty string");
  const d = createHash("sha256").update("airlock-canary-v1\n").update(seed).digest();
  return { k: new Uint32Array([d.readUInt32LE(0), d.readUInt32LE(4), d.readUInt32LE(8), d.readUInt32LE(12)]) };
}

/** murmur3's finaliser: a bijection on 32 bits with full avalanche. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * The seeded priority of one index. Not cryptographic (the seed is recorded, not secret); what
 * matters is that it is fast for a million indexes and looks uniform whatever the keys.
 */
export function indexHash(keys: SeedKeys, index: number): number {
  const k = keys.k;
  return fmix32((fmix32((index ^ k[0]!) >>> 0) + k[1]!) ^ k[2]!);
}

function stringHash(keys: SeedKeys, s: string): number {
  let h = keys.k[3]!;
  for (let i = 0; i < s.length; i++) h = fmix32((h ^ s.charCodeAt(i)) + 0x9e3779b9);
  return h;
}

function stratumKey(f: RecipientFacts): string {
  const dept = (f.department ?? "").trim().toLowerCase();
  return `${f.domain.trim().toLowerCase()}\u0000${dept}`;
}

function checkFact(f: RecipientFacts, n: number): void {
  if (!Number.isInteger(f.index) || f.index < 0 || f.index >= n) throw new RangeError(`recipient index ${String(f.index)} outside 0..${n - 1}`);
  if (typeof f.domain !== "string") throw new TypeError(`recipient ${f.index} has no domain`);
}

function checkCount(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`${name} must be an integer in 0..2^32-1, got ${v}`);
}

/** Sorted, distinct copy of indexes, each checked to lie in 0..n-1. */
export function toSortedSet(xs: ArrayLike<number>, n: number): Uint32Array {
  const a = new Uint32Array(xs.length);
  for (let i = 0; i < xs.length; i++) {
    const v = xs[i]!;
    if (!Number.isInteger(v) || v < 0 || v >= n) throw new RangeError(`index ${v} outside 0..${n - 1}`);
    a[i] = v;
  }
  a.sort();
  let w = 0;
  for (let i = 0; i < a.length; i++) if (i === 0 || a[i] !== a[i - 1]) a[w++] = a[i]!;
  return a.slice(0, w);
}

/** Binary search in a sorted Uint32Array. */
export function has(sorted: Uint32Array, v: number): boolean {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (sorted[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo < sorted.length && sorted[lo] === v;
}

/** A bounded max-heap on (hash, index): keeps the `cap` smallest pairs offered. */
class MaxHeap {
  private readonly h: Float64Array;
  private readonly idx: Uint32Array;
  private size = 0;
  constructor(private readonly cap: number) {
    this.h = new Float64Array(cap);
    this.idx = new Uint32Array(cap);
  }
  /** Pairs compare by hash, then index: a total order, so the sample never depends on input order. */
  private greater(a: number, b: number): boolean {
    return this.h[a]! > this.h[b]! || (this.h[a] === this.h[b] && this.idx[a]! > this.idx[b]!);
  }
  private swap(a: number, b: number): void {
    const th = this.h[a]!;
    this.h[a] = this.h[b]!;
    this.h[b] = th;
    const ti = this.idx[a]!;
    this.idx[a] = this.idx[b]!;
    this.idx[b] = ti;
  }
  offer(hash: number, index: number): void {
    if (this.size < this.cap) {
      let i = this.size++;
      this.h[i] = hash;
      this.idx[i] = index;
      while (i > 0) {
        const p = (i - 1) >>> 1;
        if (!this.greater(i, p)) break;
        this.swap(i, p);
        i = p;
      }
      return;
    }
    if (hash > this.h[0]! || (hash === this.h[0] && index > this.idx[0]!)) return;
    this.h[0] = hash;
    this.idx[0] = index;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.size && this.greater(l, m)) m = l;
      if (r < this.size && this.greater(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }
  indexes(): Uint32Array {
    return this.idx.subarray(0, this.size);
  }
}
