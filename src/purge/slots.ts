/**
 * What every purge connector shares around its own work: at most `limit` purges at once, a purge
 * that never rejects (the unforeseen becomes `failed`), and one log line per purge.
 */
import type { PurgeResult } from "./connector.js";

/** Where a connector writes its own lines (a pino logger will do). */
export interface PurgeLog {
  info(msg: string): void;
  warn(msg: string): void;
}

/** At most `limit` purges at once; `close()` refuses the waiting ones and waits for the running ones. */
export class PurgeSlots {
  private running = 0;
  private readonly waiting: Array<(go: boolean) => void> = [];
  private readonly active = new Set<Promise<unknown>>();
  closed = false;

  constructor(private readonly limit: number) {}

  /** Runs `work` in a slot; `null` when the slots were closed before one came free. */
  async run(work: () => Promise<PurgeResult>): Promise<PurgeResult | null> {
    if (this.closed || !(await this.acquire())) return null;
    const running = work();
    this.active.add(running);
    try {
      return await running;
    } finally {
      this.active.delete(running);
      this.release();
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.waiting.splice(0)) wake(false);
    await Promise.allSettled([...this.active]);
  }

  private acquire(): Promise<boolean> {
    if (this.running < this.limit) {
      this.running++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    const next = this.waiting.shift();
    if (next) next(true); // the slot passes on: `running` is unchanged
    else this.running--;
  }
}

/**
 * Runs one purge in a slot. `work` turns every failure it foresees into a result; the catch is for
 * the rest (a bug, an option a library rejects), so that `purge()` keeps its promise never to
 * reject. A connector closed before a slot came free answers `failed` (retry).
 */
export async function purgeInSlot(
  slots: PurgeSlots,
  name: string,
  log: PurgeLog | undefined,
  mailbox: string,
  messageId: string,
  work: () => Promise<PurgeResult>,
): Promise<PurgeResult> {
  const result = (await slots.run(() => work().catch((err: unknown): PurgeResult => ({ outcome: "failed", reason: `unexpected: ${String(err)}`.slice(0, 500), retry: true })))) ?? {
    outcome: "failed",
    reason: `the ${name} purge connector was closed`,
    retry: true,
  };
  logResult(log, name, mailbox, messageId, result);
  return result;
}

/** One log line per purge, whichever the connector. */
export function logResult(log: PurgeLog | undefined, name: string, mailbox: string, messageId: string, r: PurgeResult): void {
  if (!log) return;
  if (r.outcome === "purged") log.info(`${name} purge ${messageId} in ${mailbox}: removed ${r.removed} from ${r.folders.join(", ")}`);
  else if (r.outcome === "not_found") log.info(`${name} purge ${messageId} in ${mailbox}: not found`);
  else log.warn(`${name} purge ${messageId} in ${mailbox}: failed${r.retry ? " (will retry)" : ""}: ${r.reason}`);
}
