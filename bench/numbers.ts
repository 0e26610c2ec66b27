/** Small figures helpers shared by the bench's phases and helper processes. */

/** One decimal, as the bench reports milliseconds and seconds. */
export const round1 = (x: number): number => Math.round(x * 10) / 10;

/** The arithmetic mean (NaN for none). */
export const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
