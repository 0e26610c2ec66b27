/**
 * Every Redis connection of Airlock is built here, from the config: a URL (`REDIS_URL`), or Redis
 * Sentinel (`REDIS_SENTINELS`, `REDIS_SENTINEL_NAME`) naming the primary, with the URL then giving
 * only the credentials, the database and TLS (its host and port are not used).
 *
 * Under Sentinel, ioredis asks the sentinels for the primary, checks with INFO that the server it
 * reached is a primary (role check of the ready check; a replica is refused and the next sentinel
 * asked), and after a failover asks them again. On top of that:
 * - the old primary of a failover may well be up (a manual `SENTINEL FAILOVER`, a partition):
 *   Sentinel turns it into a replica only ~10 s later (it waits 4 hello periods before it
 *   reconfigures an instance that says it is a primary), and until then it takes writes that the
 *   resync throws away. So each process listens to `+switch-master` on the sentinels and sends
 *   its connections still on the old primary to the new one at once (SwitchWatch below);
 * - a write that reaches a demoted primary anyway is refused with READONLY: the client
 *   reconnects, to the primary the sentinels name, and sends that command again (a refused write
 *   did not happen, so sending it again is safe);
 * - reconnection is retried every ≤ 1 s (ioredis's default backs off to 5 s), so the processes
 *   are back on the new primary within about a second of the sentinels naming it.
 * Not ioredis's own `failoverDetector`: in ioredis 6.0, a switch announced while the client is
 * asking the sentinels for the primary ends the client for good (every later command fails
 * "Connection is closed."; seen in test/faults/failover.test.ts). SwitchWatch only moves a
 * client that is connected ("ready") to a server other than the new primary.
 */
import type { Socket } from "node:net";
import { Redis, type RedisOptions } from "ioredis";

export interface RedisTarget {
  /** redis[s]://[user:password@]host:port[/db]. With sentinels only user, password, db and TLS are used. */
  url?: string | undefined;
  sentinels?: ReadonlyArray<{ host: string; port: number }> | undefined;
  /** The primary's name the sentinels monitor. */
  sentinelName?: string | undefined;
}

export interface ConnectionRole {
  /** CLIENT SETNAME, as CLIENT LIST shows it. */
  connectionName: string;
  /** BullMQ workers (and blocking readers): commands wait for Redis however long it is away. */
  workers?: boolean;
}

/** A reconnect on READONLY (a demoted primary), the refused command sent again after it. */
const RECONNECT_AND_RESEND = 2;
/** A reconnect on READONLY, the refused command failing (URL mode: the URL may name a replica for good). */
const RECONNECT = 1;

export function createRedisClient(target: RedisTarget, role: ConnectionRole): Redis {
  const common: RedisOptions = { connectionName: role.connectionName, ...(role.workers ? { maxRetriesPerRequest: null } : {}) };
  if (!target.sentinels?.length) {
    if (!target.url) throw new Error("Redis: neither REDIS_URL nor REDIS_SENTINELS is set");
    // A URL may name a DNS name that follows the primary (managed Redis): reconnecting on READONLY
    // resolves it again. The refused command fails rather than looping against a replica.
    return new Redis(target.url, { ...common, reconnectOnError: (e) => (isReadOnly(e) ? RECONNECT : false) });
  }
  const options = sentinelOptions(target);
  const client = new Redis({ ...common, ...options });
  switchWatch(options).add(client);
  return client;
}

/** The ioredis options for a Sentinel-managed primary (exported for tests of the URL handling). */
export function sentinelOptions(target: RedisTarget): RedisOptions {
  const url = target.url ? new URL(target.url) : null;
  const username = url?.username ? decodeURIComponent(url.username) : undefined;
  const password = url?.password ? decodeURIComponent(url.password) : undefined;
  const db = url && url.pathname.length > 1 ? Number(url.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0) throw new Error(`Redis: REDIS_URL's path must be a database number, not "${url?.pathname}"`);
  const tls = url?.protocol === "rediss:";
  return {
    sentinels: target.sentinels!.map((s) => ({ host: s.host, port: s.port })),
    name: target.sentinelName ?? "airlock",
    role: "master",
    username,
    password,
    db,
    // The same password for the sentinels (as their default user, whatever REDIS_URL's user):
    // sentinels without a password accept it (a user without a password takes any; checked with
    // Redis 7.0), and the usual setup gives them the data nodes' password. A password of their
    // own would need a setting of its own (REDIS_SENTINEL_PASSWORD).
    sentinelPassword: password,
    // rediss: TLS to the primary (ioredis names this option after the sentinel mode, but it is the
    // primary's connection it encrypts). The sentinels themselves are spoken to in plain TCP.
    ...(tls ? { tls: {}, enableTLSForSentinelMode: true } : {}),
    // A sentinel that accepts the connection but does not answer must not hold the reconnection.
    sentinelCommandTimeout: 2_000,
    retryStrategy: (times) => Math.min(100 * times, 1_000),
    reconnectOnError: (e) => (isReadOnly(e) ? RECONNECT_AND_RESEND : false),
  };
}

/** "READONLY You can't write against a read only replica." — also when a Lua script's write hit it. */
function isReadOnly(e: Error): boolean {
  return e.message.startsWith("READONLY ");
}

/**
 * One per process and sentinel group: a subscription to `+switch-master` on every sentinel (each
 * announces the switch once it has taken it on, the last when all agree), and the clients to
 * move. A client is moved only when it is connected and not to the new primary: one that is
 * connecting asks the sentinels anyway. Moving is ioredis's disconnect-and-reconnect: commands
 * in flight are sent again to the new primary. The subscriptions end with the last client.
 */
class SwitchWatch {
  private readonly clients = new Set<Redis>();
  private subscribers: Redis[] = [];

  constructor(private readonly options: RedisOptions) {}

  add(client: Redis): void {
    if (this.clients.size === 0) this.start();
    this.clients.add(client);
    client.once("end", () => {
      this.clients.delete(client);
      if (this.clients.size === 0) this.stop();
    });
  }

  private start(): void {
    this.subscribers = (this.options.sentinels ?? []).map((s) => {
      const sub = new Redis({
        host: s.host,
        port: s.port,
        password: this.options.sentinelPassword,
        connectionName: "airlock-switch-watch",
        maxRetriesPerRequest: null,
        retryStrategy: (times) => Math.min(200 * times, 2_000),
      });
      sub.on("error", () => {}); // a sentinel away is the others' to report; this one reconnects and resubscribes
      sub.on("message", (_channel: string, message: string) => this.switched(message));
      sub.subscribe("+switch-master").catch(() => {});
      return sub;
    });
  }

  private stop(): void {
    for (const sub of this.subscribers) sub.disconnect();
    this.subscribers = [];
  }

  /** "<name> <old ip> <old port> <new ip> <new port>" */
  private switched(message: string): void {
    const [name, , , host, port] = message.split(" ");
    if (name !== this.options.name) return;
    for (const client of this.clients) {
      const stream = (client as unknown as { stream?: Socket }).stream;
      if (client.status !== "ready" || (stream?.remoteAddress === host && String(stream?.remotePort) === port)) continue;
      client.disconnect(true);
    }
  }
}

const watches = new Map<string, SwitchWatch>();
function switchWatch(options: RedisOptions): SwitchWatch {
  const key = `${options.name} ${(options.sentinels ?? []).map((s) => `${s.host}:${s.port}`).join(",")}`;
  let w = watches.get(key);
  if (!w) watches.set(key, (w = new SwitchWatch(options)));
  return w;
}
