/**
 * What the HTTP purge connectors (graph-connector.ts, gmail-connector.ts) share: a bound on the
 * purges running at once, one HTTP exchange with bounded retries, and the failure a purge ends
 * with. The contract they keep is connector.ts's.
 */
import { setTimeout as delay } from "node:timers/promises";
import type { PurgeResult } from "./connector.js";
import type { PurgeLog } from "./slots.js";

/** A purge that failed: the result, ready to return. */
export class PurgeFailure extends Error {
  constructor(
    readonly reason: string,
    readonly retry: boolean,
  ) {
    super(reason);
  }
}

export interface HttpPurgeTimeouts {
  /**
   * One HTTP exchange, headers and body, default 30 s: Graph and Gmail answer a search of one
   * mailbox in well under a second, so an exchange this slow is a stalled connection; it counts
   * as one failed attempt and is retried (see HttpRetry).
   */
  requestMs: number;
  /**
   * The whole purge of one mailbox, token, retries and their waits included, default 2 minutes:
   * bounds a server that keeps asking to wait, so that a concurrency slot always comes back. The
   * caller retries a `failed` with `retry: true` on its own schedule.
   */
  purgeMs: number;
}

export interface HttpRetry {
  /** Attempts of one request, the first included, default 4. */
  maxAttempts: number;
  /**
   * Longest single wait, default 30 s. A `Retry-After` asking for more ends the purge as `failed`
   * with `retry: true` at once: holding a concurrency slot that long would stall every other
   * mailbox, and the caller's retry schedule is the place for long waits.
   */
  maxWaitMs: number;
  /** First wait when the server names none (connection lost, 5xx without Retry-After); doubles each attempt, default 1 s. */
  baseDelayMs: number;
}

export const DEFAULT_HTTP_TIMEOUTS: HttpPurgeTimeouts = { requestMs: 30_000, purgeMs: 120_000 };
export const DEFAULT_HTTP_RETRY: HttpRetry = { maxAttempts: 4, maxWaitMs: 30_000, baseDelayMs: 1_000 };

/** Waits `ms`, or rejects when `signal` aborts (the purge's deadline). Injectable so that tests need not sleep. */
export type Sleep = (ms: number, signal: AbortSignal) => Promise<void>;

/** What both HTTP connectors (Graph, Gmail) take besides their service's own settings. */
export interface HttpConnectorOptions {
  /** Purges running at once, default 4. */
  concurrency?: number;
  timeouts?: Partial<HttpPurgeTimeouts>;
  retry?: Partial<HttpRetry>;
  /** Tests only: waits without sleeping, and a clock for the tokens' expiry. */
  sleep?: Sleep;
  now?: () => number;
  /** The connector's own log lines; default none. */
  log?: PurgeLog;
}
export const realSleep: Sleep = (ms, signal) => delay(ms, undefined, { signal });

export interface HttpAnswer {
  status: number;
  headers: Headers;
  /** The body parsed as JSON, or undefined when it is empty or not JSON. */
  json: unknown;
  /** The body as text, cut to 500 characters (for failure reasons). */
  text: string;
}

export interface ExchangeOptions {
  /** The purge's deadline: aborts the request in flight and any wait. */
  signal: AbortSignal;
  timeouts: HttpPurgeTimeouts;
  retry: HttpRetry;
  sleep: Sleep;
  /** What is being done, for failure reasons (`listing alice@corp.example's messages`). */
  what: string;
  /** Whether an answer is worth another attempt (a 429, a 503); a connection lost always is. */
  retryable: (a: HttpAnswer) => boolean;
}

/**
 * One HTTP exchange, retried while the server answers something `retryable` or the connection
 * fails, at most `maxAttempts` times. Every request the connectors send is idempotent (GET, DELETE,
 * Gmail's trash, a token request), so repeating one whose answer was lost does no harm. Returns
 * the last answer, retryable or not (the caller turns it into a failure); throws a PurgeFailure
 * when no answer came at all or the wait asked for is too long.
 */
export async function exchange(url: string, init: RequestInit, o: ExchangeOptions): Promise<HttpAnswer> {
  for (let attempt = 1; ; attempt++) {
    let answer: HttpAnswer | undefined;
    let lost: unknown;
    try {
      answer = await once(url, init, o);
    } catch (err) {
      if (o.signal.aborted) throw deadlineFailure(o);
      lost = err;
    }
    if (answer && !o.retryable(answer)) return answer;
    if (attempt >= o.retry.maxAttempts) {
      if (answer) return answer;
      throw new PurgeFailure(`${o.what}: ${describeNetworkError(lost)} (${attempt} attempts)`, true);
    }
    // The server's Retry-After when it gave one (Graph's and Google's throttling say how long the
    // mailbox or app is held back; asking sooner only extends it), else exponential backoff so that
    // a struggling server is not hit at a steady rate.
    const asked = answer ? retryAfterMs(answer.headers.get("retry-after")) : undefined;
    const wait = asked ?? o.retry.baseDelayMs * 2 ** (attempt - 1);
    if (wait > o.retry.maxWaitMs) {
      throw new PurgeFailure(`${o.what}: the server asked to wait ${Math.ceil(wait / 1000)} s (answered ${answer?.status}), more than the ${Math.ceil(o.retry.maxWaitMs / 1000)} s this connector waits`, true);
    }
    try {
      await o.sleep(wait, o.signal);
    } catch {
      throw deadlineFailure(o);
    }
  }
}

async function once(url: string, init: RequestInit, o: ExchangeOptions): Promise<HttpAnswer> {
  const signal = AbortSignal.any([o.signal, AbortSignal.timeout(o.timeouts.requestMs)]);
  const res = await fetch(url, { ...init, signal, redirect: "error" }); // a redirect would carry the bearer token elsewhere
  const text = await res.text();
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text: text.slice(0, 500) };
}

function deadlineFailure(o: ExchangeOptions): PurgeFailure {
  return new PurgeFailure(`${o.what}: gave up after ${o.timeouts.purgeMs} ms`, true);
}

function describeNetworkError(err: unknown): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } } | undefined;
  if (e?.name === "TimeoutError") return "no answer in time";
  return `connection failed: ${e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(err)}`.slice(0, 300);
}

/** `Retry-After` in milliseconds: delay-seconds or an HTTP-date (RFC 9110 10.2.3); undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}


/**
 * A cached access token and when to stop using it: `margin` before it expires (5 minutes, or
 * half its life when shorter), so that a token never expires in the middle of a purge (each is
 * bounded by `purgeMs`, 2 minutes by default).
 */
export function tokenUsableUntil(now: number, expiresInSeconds: number): number {
  const life = Math.max(0, expiresInSeconds) * 1000;
  return now + life - Math.min(300_000, life / 2);
}


/**
 * An address the connectors put into a URL path: one `local@domain` without spaces, control
 * characters or URL syntax, so that the path names that user and nothing else.
 */
export function isPlainAddress(mailbox: string): boolean {
  return mailbox.length <= 320 && /^[^\s\x00-\x1f\x7f@/\\?#%"]+@[^\s\x00-\x1f\x7f@/\\?#%"]+$/.test(mailbox);
}

/** `p`, or the failure `onAbort` makes when `signal` aborts first (a purge's deadline while it waits for a shared token). */
export function untilAborted<T>(p: Promise<T>, signal: AbortSignal, onAbort: () => Error): Promise<T> {
  if (signal.aborted) return Promise.reject(onAbort());
  return new Promise<T>((resolve, reject) => {
    const abort = () => reject(onAbort());
    signal.addEventListener("abort", abort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener("abort", abort));
  });
}
