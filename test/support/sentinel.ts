/**
 * Test harness: Redis under Sentinel, for failover tests. One primary and two replicas
 * (redis-server, AOF on, each in its own temporary dir, on free ports, all with a password) and
 * three sentinels (`redis-sentinel <conf>`, Debian's package `redis-sentinel`, which .ci/run
 * installs; only its binary is used, as a plain process) monitoring them with quorum 2 and short timeouts, so that
 * a failover completes in a few seconds. Everything is polled with a deadline, never slept on.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "../../src/infra/redis-process.js";

const HOST = "127.0.0.1";

export interface SentinelOptions {
  /** The primary's name the sentinels monitor. Default "airlock". */
  name?: string;
  /** requirepass/masterauth of the data nodes (the sentinels have none). Default a fixed test password. */
  password?: string;
  /** Sentinel down-after-milliseconds. Default 1000. */
  downAfterMs?: number;
  /** Sentinel failover-timeout. Default 5000. */
  failoverTimeoutMs?: number;
}

export interface RedisNode {
  port: number;
  dir: string;
  /** Whether its process is running (not killed, not stopped). */
  alive(): boolean;
}

export interface SentinelRedis {
  name: string;
  password: string;
  sentinels: Array<{ host: string; port: number }>;
  nodes: RedisNode[];
  /** For Airlock: REDIS_SENTINELS, REDIS_SENTINEL_NAME and a REDIS_URL that gives only the password. */
  env: { REDIS_SENTINELS: string; REDIS_SENTINEL_NAME: string; REDIS_URL: string };
  /** The primary's port as a majority of the sentinels name it. */
  primaryPort(): Promise<number>;
  /** SIGKILL of the current primary; resolves once it is gone, with its port and the time of the kill. */
  kill9Primary(): Promise<{ port: number; at: number }>;
  /**
   * SENTINEL FAILOVER (what an operator does before maintenance): the old primary stays up, and
   * Sentinel makes it a replica only some 10 s later. Resolves once the sentinels name the new one.
   */
  failoverManually(): Promise<{ oldPort: number; port: number; at: number; ms: number }>;
  /** Polls until every sentinel names a primary other than `oldPort` and that node answers as a primary. */
  waitForNewPrimary(oldPort: number, deadlineMs?: number): Promise<{ port: number; at: number }>;
  /** Starts a killed node again, as a replica of the current primary (what Sentinel would make of it). */
  restartAsReplica(port: number): Promise<void>;
  /** Polls until the primary has `n` replicas online and every sentinel sees them healthy. */
  waitForReplicas(n: number, deadlineMs?: number): Promise<void>;
  /** SIGSTOP (true) or SIGCONT (false) every replica: they stop acknowledging without disconnecting. */
  freezeReplicas(frozen: boolean): Promise<void>;
  /** A client straight to one node (not through the sentinels). The caller disconnects it. */
  client(port: number): Redis;
  cleanup(): Promise<void>;
}

interface Proc {
  port: number;
  dir: string;
  child: ChildProcess | null;
  output: string;
  stopped: boolean;
}

export async function startSentinelRedis(opts: SentinelOptions = {}): Promise<SentinelRedis> {
  const name = opts.name ?? "airlock";
  const password = opts.password ?? "sentinel-test-password-0123456789";
  const root = mkdtempSync(join(tmpdir(), "airlock-sentinel-"));
  const procs: Proc[] = [];
  const sentinels: Proc[] = [];

  const launch = (p: Proc, binary: "redis-server" | "redis-sentinel", args: string[]) => {
    const child = spawn(binary, args, { stdio: ["ignore", "pipe", "pipe"] });
    p.child = child;
    p.stopped = false;
    const keep = (d: Buffer) => (p.output = (p.output + d.toString()).slice(-20_000));
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    child.once("error", (e) => keep(Buffer.from(`cannot start ${binary}: ${e.message}`)));
  };
  const dataArgs = (p: Proc, replicaOf: number | null) => [
    "--port", String(p.port),
    "--bind", HOST,
    "--dir", p.dir,
    "--appendonly", "yes",
    "--appendfsync", "everysec",
    "--maxmemory-policy", "noeviction",
    "--lazyfree-lazy-server-del", "yes",
    "--lazyfree-lazy-user-del", "yes",
    "--save", "",
    "--daemonize", "no",
    "--requirepass", password,
    "--masterauth", password,
    // Full syncs at once: the default waits 5 s for more replicas to share a diskless transfer.
    "--repl-diskless-sync-delay", "0",
    ...(replicaOf === null ? [] : ["--replicaof", HOST, String(replicaOf)]),
  ];
  const node = async (replicaOf: number | null): Promise<Proc> => {
    const port = await freePort();
    const p: Proc = { port, dir: join(root, `redis-${port}`), child: null, output: "", stopped: false };
    mkdirSync(p.dir);
    launch(p, "redis-server", dataArgs(p, replicaOf));
    procs.push(p);
    return p;
  };
  const client = (port: number, pass: string | null = password) => {
    const c = new Redis({ host: HOST, port, password: pass ?? undefined, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1000, commandTimeout: 2000 });
    c.on("error", () => {});
    return c;
  };
  /** One question to one server; null if it does not answer (down, starting, loading). */
  const ask = async <T>(port: number, pass: string | null, q: (c: Redis) => Promise<T>): Promise<T | null> => {
    const c = client(port, pass);
    try {
      await c.connect();
      return await q(c);
    } catch {
      return null;
    } finally {
      c.disconnect();
    }
  };
  const until = async <T>(what: string, check: () => Promise<T | null | false>, deadlineMs: number): Promise<T> => {
    const end = Date.now() + deadlineMs;
    for (;;) {
      const v = await check();
      if (v !== null && v !== false) return v;
      if (Date.now() > end) {
        const logs = [...procs, ...sentinels].map((p) => `--- ${p.port}${p.child?.exitCode != null ? ` (exited ${p.child.exitCode})` : ""}:\n${p.output.split("\n").slice(-8).join("\n")}`).join("\n");
        throw new Error(`sentinel harness: timed out waiting for ${what}\n${logs}`);
      }
      // Sentinels and replication move on their own clocks (pings every second, hellos every two): poll.
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const info = (port: number) => ask(port, password, (c) => c.info("replication"));
  const field = (text: string, key: string) => new RegExp(`^${key}:(.*)$`, "m").exec(text)?.[1]?.trim();
  /** What one sentinel says about the primary, as a field map (SENTINEL MASTER's flat list). */
  const sentinelMaster = (port: number) =>
    ask(port, null, async (c) => {
      const flat = (await c.call("SENTINEL", "MASTER", name)) as string[];
      const m = new Map<string, string>();
      for (let i = 0; i + 1 < flat.length; i += 2) m.set(flat[i]!, flat[i + 1]!);
      return m;
    });
  const namedBy = (port: number) => ask(port, null, async (c) => Number(((await c.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)) as string[])[1]));

  const primary = await node(null);
  await Promise.all([node(primary.port), node(primary.port)]);
  // Sentinels learn the replicas from the primary's INFO, which they read at once and then every
  // 10 s: start them only when both replicas are attached, or they would not see them for 10 s.
  await until("the replicas to attach", async () => {
    const i = await info(primary.port);
    return i !== null && field(i, "connected_slaves") === "2" && (i.match(/state=online/g) ?? []).length === 2;
  }, 20_000);

  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const s: Proc = { port, dir: join(root, `sentinel-${port}`), child: null, output: "", stopped: false };
    mkdirSync(s.dir);
    const conf = join(s.dir, "sentinel.conf");
    writeFileSync(
      conf,
      [
        `port ${port}`,
        `bind ${HOST}`,
        `dir ${s.dir}`,
        "daemonize no",
        'logfile ""',
        `sentinel monitor ${name} ${HOST} ${primary.port} 2`,
        `sentinel auth-pass ${name} ${password}`,
        `sentinel down-after-milliseconds ${name} ${opts.downAfterMs ?? 1000}`,
        `sentinel failover-timeout ${name} ${opts.failoverTimeoutMs ?? 5000}`,
        `sentinel parallel-syncs ${name} 2`,
        "",
      ].join("\n"),
    );
    launch(s, "redis-sentinel", [conf]);
    sentinels.push(s);
  }
  // Ready for a failover once every sentinel knows both replicas and the two other sentinels
  // (they find each other through hello messages on the primary, every 2 s).
  await until("the sentinels to know each other and the replicas", async () => {
    const views = await Promise.all(sentinels.map((s) => sentinelMaster(s.port)));
    return views.every((m) => m !== null && m.get("num-slaves") === "2" && m.get("num-other-sentinels") === "2" && m.get("flags") === "master");
  }, 30_000);

  const procAt = (port: number) => {
    const p = procs.find((x) => x.port === port);
    if (!p) throw new Error(`sentinel harness: no redis node on port ${port}`);
    return p;
  };
  const kill = (p: Proc, signal: NodeJS.Signals) =>
    new Promise<void>((res) => {
      const c = p.child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return res();
      c.once("exit", () => res());
      if (p.stopped) c.kill("SIGCONT");
      c.kill(signal);
    });

  const primaryPort = () =>
    until("a majority of the sentinels to name one primary", async () => {
      const named = (await Promise.all(sentinels.map((s) => namedBy(s.port)))).filter((p): p is number => p !== null && p > 0);
      const votes = new Map<number, number>();
      for (const p of named) votes.set(p, (votes.get(p) ?? 0) + 1);
      return [...votes].find(([, n]) => n >= 2)?.[0] ?? null;
    }, 30_000);

  const waitForNewPrimary = async (oldPort: number, deadlineMs = 30_000) => {
    const port = await until(`the sentinels to promote a replica of ${oldPort}`, async () => {
      const named = await Promise.all(sentinels.map((s) => namedBy(s.port)));
      const first = named[0];
      if (!first || first === oldPort || !named.every((p) => p === first)) return null;
      const role = await ask(first, password, async (c) => ((await c.call("ROLE")) as unknown[])[0]);
      return role === "master" ? first : null;
    }, deadlineMs);
    return { port, at: Date.now() };
  };

  return {
    name,
    password,
    sentinels: sentinels.map((s) => ({ host: HOST, port: s.port })),
    nodes: procs.map((p) => ({ port: p.port, dir: p.dir, alive: () => !!p.child && p.child.exitCode === null && p.child.signalCode === null && !p.stopped })),
    env: {
      REDIS_SENTINELS: sentinels.map((s) => `${HOST}:${s.port}`).join(","),
      REDIS_SENTINEL_NAME: name,
      // Only the password counts under Sentinel: the host is a placeholder the client never dials.
      REDIS_URL: `redis://:${encodeURIComponent(password)}@sentinel-managed/0`,
    },
    primaryPort,
    async kill9Primary() {
      const port = await primaryPort();
      const at = Date.now();
      await kill(procAt(port), "SIGKILL");
      return { port, at };
    },
    async failoverManually() {
      const oldPort = await primaryPort();
      const at = Date.now();
      const answer = await ask(sentinels[0]!.port, null, (c) => c.call("SENTINEL", "FAILOVER", name));
      if (answer !== "OK") throw new Error(`sentinel harness: SENTINEL FAILOVER answered ${String(answer)}`);
      const promoted = await waitForNewPrimary(oldPort);
      return { oldPort, port: promoted.port, at, ms: promoted.at - at };
    },
    waitForNewPrimary,
    async restartAsReplica(port) {
      const p = procAt(port);
      await kill(p, "SIGKILL");
      launch(p, "redis-server", dataArgs(p, await primaryPort()));
      await until(`${port} to answer`, async () => (await info(port)) !== null, 20_000);
    },
    async waitForReplicas(n, deadlineMs = 30_000) {
      const port = await primaryPort();
      await until(`${n} replicas online and seen by every sentinel`, async () => {
        const i = await info(port);
        if (i === null || (i.match(/state=online/g) ?? []).length < n) return false;
        const views = await Promise.all(
          sentinels.map((s) =>
            ask(s.port, null, async (c) => {
              const list = (await c.call("SENTINEL", "REPLICAS", name)) as string[][];
              return list.filter((flat) => {
                const flags = flat[flat.indexOf("flags") + 1] ?? "";
                const link = flat[flat.indexOf("master-link-status") + 1];
                return !/s_down|o_down|disconnected/.test(flags) && link === "ok";
              }).length;
            }),
          ),
        );
        return views.every((v) => v !== null && v >= n);
      }, deadlineMs);
    },
    async freezeReplicas(frozen) {
      const port = await primaryPort();
      for (const p of procs) {
        if (p.port === port || !p.child || p.child.exitCode !== null || p.child.signalCode !== null) continue;
        if (p.stopped === frozen) continue;
        p.child.kill(frozen ? "SIGSTOP" : "SIGCONT");
        p.stopped = frozen;
      }
    },
    client: (port) => client(port),
    async cleanup() {
      await Promise.all([...sentinels, ...procs].map((p) => kill(p, "SIGKILL")));
      rmSync(root, { recursive: true, force: true });
    },
  };
}
