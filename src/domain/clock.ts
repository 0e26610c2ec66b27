/** Time, passed in: holds, expiries and releases are tested on an injected clock, never by sleeping. */
export interface Clock {
  /** Epoch milliseconds. */
  now(): number;
}

/** The wall clock. Only src/runtime.ts (the wiring) and tools outside the service pick it. */
export const systemClock: Clock = { now: () => Date.now() };
