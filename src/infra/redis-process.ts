/**
 * Spawns a private redis-server: used by `npm start` in development (data under ./data)
 * and by the test harness (a temporary dir, a free port). AOF is always on, eviction off.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync } from "node:fs";
import { createServer } from "node:net";
import { Redis } from "ioredis";

export interface RedisProcessOptions {
  dir: string;
  port?: number;
  /** `always` in fault tests (nothing acknowledged is lost), `everysec` otherwise. */
  appendfsync?: "always" | "everysec";
  bin?: string;
}

export interface RedisProcess {
  url: string;
  port: number;
  dir: string;
  /** Stops gracefully (SHUTDOWN, which also rewrites nothing: AOF is already on disk). Always resolves. */
  stop(): Promise<void>;
  /** SIGKILL, for fault tests. Always resolves once the process is gone. */
  kill(): Promise<void>;
  /** Starts again on the same port and dir (after stop or kill). */
  restart(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))));
    });
  });
}

export async function startRedisProcess(opts: RedisProcessOptions): Promise<RedisProcess> {
  mkdirSync(opts.dir, { recursive: true });
  const port = opts.port ?? (await freePort());
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;

  const launch = async () => {
    const args = [
      "--port", String(port),
      "--bind", "127.0.0.1",
      "--dir", opts.dir,
      "--appendonly", "yes",
      "--appendfsync", opts.appendfsync ?? "everysec",
      "--maxmemory-policy", "noeviction",
      // Free a replaced audience or a deleted frozen set in the background: freeing a million-member
      // zset in place blocks Redis for 180-290 ms (measured), recalls included.
      "--lazyfree-lazy-server-del", "yes",
      "--lazyfree-lazy-user-del", "yes",
      "--save", "",
      "--daemonize", "no",
    ];
    const proc = spawn(opts.bin ?? "redis-server", args, { stdio: ["ignore", "ignore", "pipe"] });
    child = proc;
    let stderr = "";
    proc.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<never>((_, reject) => {
      proc.once("error", (e) => reject(new Error(`cannot start redis-server (${e.message}); install it: apt-get install -y redis-server`)));
      proc.once("exit", (code) => reject(new Error(`redis-server exited with ${code}: ${stderr.trim()}`)));
    });
    await Promise.race([waitForPing(url), exited]);
  };

  const exit = (signal: NodeJS.Signals) =>
    new Promise<void>((resolve) => {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return resolve();
      c.once("exit", () => resolve());
      c.kill(signal);
    });

  await launch();
  return {
    url,
    port,
    dir: opts.dir,
    stop: () => exit("SIGTERM"),
    kill: () => exit("SIGKILL"),
    restart: launch,
  };
}

/** Polls PING until Redis answers; it loads the AOF first, which may take a moment. */
async function waitForPing(url: string, deadlineMs = 20_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    r.on("error", () => {});
    try {
      await r.connect();
      if ((await r.ping()) === "PONG") return;
    } catch {
      // Not listening or still loading: try again below.
    } finally {
      r.disconnect();
    }
    if (Date.now() > until) throw new Error(`redis at ${url} did not answer within ${deadlineMs} ms`);
    await new Promise((res) => setTimeout(res, 50)); // Poll interval: short, startup is usually < 100 ms.
  }
}
