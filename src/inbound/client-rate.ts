/**
 * Per-client limits of the inbound listener: a token bucket of mail transactions and a cap on
 * concurrent connections, both per client network (an IPv4 address, an IPv6 /64: one host owns a
 * whole /64, so counting single IPv6 addresses would be no limit at all). Pure apart from the
 * injected clock; memory bounded by MAX_TRACKED.
 */

export interface ClientRateOptions {
  /** Transactions a client may start at once after being idle. Default 30. */
  burst?: number;
  /** Transactions per minute a client gets back. Default 60: a busy MTA's bounces for a canary of
   * a few hundred arrive over minutes, far below; a client past it is broken or hostile. */
  perMinute?: number;
  /** Connections open at once from one client. Default 10. */
  maxConnections?: number;
  /** Epoch ms; injected so tests need no sleeping. */
  now?: () => number;
}

/** Clients remembered at most; idle ones (bucket full, no connection) are forgotten first. */
export const MAX_TRACKED = 10_000;

interface Entry {
  tokens: number;
  at: number;
  connections: number;
}

export class ClientRate {
  private readonly burst: number;
  private readonly perMs: number;
  private readonly maxConnections: number;
  private readonly now: () => number;
  private readonly entries = new Map<string, Entry>();

  constructor(o: ClientRateOptions = {}) {
    this.burst = o.burst ?? 30;
    this.perMs = (o.perMinute ?? 60) / 60_000;
    this.maxConnections = o.maxConnections ?? 10;
    this.now = o.now ?? Date.now;
    if (!(this.burst >= 1 && this.perMs > 0 && this.maxConnections >= 1)) throw new RangeError("client rate limits must be positive");
  }

  /** A connection opens: false (refuse it) when the client has too many open or no transaction left. */
  connect(address: string): boolean {
    const e = this.entry(clientKey(address));
    if (e.connections >= this.maxConnections || e.tokens < 1) return false;
    e.connections++;
    return true;
  }

  /** A connection that `connect` accepted closes. */
  disconnect(address: string): void {
    const e = this.entries.get(clientKey(address));
    if (e && e.connections > 0) e.connections--;
  }

  /** A transaction starts (MAIL FROM): false when the client is over its rate. */
  take(address: string): boolean {
    const e = this.entry(clientKey(address));
    if (e.tokens < 1) return false;
    e.tokens--;
    return true;
  }

  private entry(key: string): Entry {
    const now = this.now();
    let e = this.entries.get(key);
    if (!e) {
      if (this.entries.size >= MAX_TRACKED) this.forget(now);
      e = { tokens: this.burst, at: now, connections: 0 };
      this.entries.set(key, e);
      return e;
    }
    e.tokens = Math.min(this.burst, e.tokens + Math.max(0, now - e.at) * this.perMs);
    e.at = now;
    return e;
  }

  /** Drops idle clients; if all are busy, the oldest entries (a flood of addresses must not grow memory). */
  private forget(now: number): void {
    for (const [k, e] of this.entries) {
      if (e.connections === 0 && e.tokens + (now - e.at) * this.perMs >= this.burst) this.entries.delete(k);
    }
    for (const k of this.entries.keys()) {
      if (this.entries.size < MAX_TRACKED) break;
      this.entries.delete(k);
    }
  }
}

/** The client's network: an IPv4 address (also when IPv4-mapped), or the /64 of an IPv6 one. */
export function clientKey(address: string): string {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (!address.includes(":")) return address;
  const [head = "", tail = ""] = address.toLowerCase().split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = address.includes("::") ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right] : left;
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")}::/64`;
}
