/**
 * Airlock's parts as child processes (`node --import tsx src/main.ts api|worker`), so that a fault
 * test can kill -9 them, SIGTERM them, and start them again against the same Redis.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../../src/infra/redis-process.js";
import { tokenOf, USERS, type UserKey } from "./airlock.js";

const REPO = new URL("../../", import.meta.url).pathname;

export interface AirlockProcess {
  child: ChildProcess;
  /** The HTTP base URL (API) or the metrics URL's base (worker). */
  url: string;
  kill9(): Promise<void>;
  /** SIGTERM; resolves with the milliseconds until the process exited. */
  terminate(): Promise<number>;
  /** SIGSTOP: the whole process (event loop, timers, sockets' readers) stands still until `cont()`. */
  stop(): void;
  /** SIGCONT: a process stopped by `stop()` runs on. */
  cont(): void;
  /** The last 20,000 characters of stderr (and of the log lines, with `logs`). */
  stderr(): string;
}

export function writeUsers(dir: string): string {
  const file = join(dir, "users.json");
  writeFileSync(file, JSON.stringify({ users: Object.entries(USERS).map(([k, u]) => ({ ...u, token: tokenOf(k as UserKey) })) }));
  return file;
}

export async function spawnAirlock(mode: "api" | "worker", env: Record<string, string>, opts: { logs?: boolean } = {}): Promise<AirlockProcess> {
  const port = await freePort();
  const child = spawn(process.execPath, ["--import", "tsx", join(REPO, "src/main.ts"), mode], {
    cwd: REPO,
    env: { ...process.env, NODE_ENV: "test", LOG_LEVEL: "warn", ...env, ...(mode === "api" ? { PORT: String(port) } : { METRICS_PORT: String(port) }) },
    stdio: ["ignore", opts.logs ? "pipe" : "ignore", "pipe"],
  });
  let err = "";
  const keep = (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
  };
  child.stderr!.on("data", keep);
  // `logs`: its log lines (pino writes to stdout) are kept with stderr, for a failing test to show.
  child.stdout?.on("data", keep);
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`airlock ${mode} exited with ${child.exitCode}: ${err.slice(-3000)}`);
    if (await fetch(`${url}/healthz`).then((r) => r.ok, () => false)) break;
    if (Date.now() > deadline) throw new Error(`airlock ${mode} not ready within 60 s: ${err.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 100)); // starting (tsx compiles on the fly): poll readiness
  }
  return {
    child,
    url,
    stderr: () => err,
    async kill9() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      await exited;
    },
    async terminate() {
      const t0 = Date.now();
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      await exited;
      return Date.now() - t0;
    },
    stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGSTOP");
    },
    cont() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGCONT");
    },
  };
}

/** The JSON API as a given user. */
export async function api(base: string, user: UserKey, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(base + path, {
    method,
    headers: { authorization: `Bearer ${tokenOf(user)}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed };
}

/** A tiny seeded PRNG (mulberry32): the fault schedule of a failing run can be replayed from its seed. */
export function seeded(seed: number): () => number {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r = (r + Math.imul(r ^ (r >>> 7), 61 | r)) ^ r;
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Polls `check` until it gives a value (not undefined or false), or fails naming `what` (and
 * `note`, e.g. the seed) after the deadline. An error counts as "not yet": the API or Redis may be
 * restarting or failing over under the test.
 */
export async function pollUntil<T>(what: string, check: () => Promise<T | undefined | false>, deadlineMs: number, note = ""): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await check().catch(() => undefined);
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}${note ? ` (${note})` : ""}`);
    await new Promise((r) => setTimeout(r, 100)); // state reached by background processes: poll
  }
}

/** Uploads audience `name` of `size` numbered addresses (`<name>-00042@corp.example`) as the admin. */
export async function uploadAudience(base: string, name: string, size: number): Promise<void> {
  const recipients = Array.from({ length: size }, (_, i) => ({ email: `${name}-${String(i).padStart(5, "0")}@corp.example` }));
  const r = await api(base, "admin", "POST", "/api/audiences", { name, recipients });
  if (r.status !== 201) throw new Error(`audience ${name}: ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
}
