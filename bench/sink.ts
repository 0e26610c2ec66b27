/**
 * The SMTP sink the benchmark sends to: postfix's `smtp-sink` (C, the machine's limit) when it is
 * installed, else bench/sink-server.mts (Node, minimal, its own process). Both are children of the
 * driver and are stopped with it.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createInterface } from "node:readline";
import { freePort } from "../src/infra/redis-process.js";

export interface KindStats {
  messages: number;
  recipients: number;
  firstAt: number;
  lastAt: number;
}

export interface SinkStats {
  /** Messages accepted (all kinds); null from postfix's smtp-sink (its counters are not flushed to a pipe). */
  messages: number | null;
  /** Only from the Node sink (postfix's does not tell). */
  original?: KindStats;
  correction?: KindStats;
  /** Anything else: notifications to authors and approvers. */
  other?: KindStats;
  distinctOriginals?: number;
  duplicates?: number;
  /** Only from a recording Node sink: the Reply-To address of the first original since the reset (null: none had one). */
  replyTo?: string | null;
}

export interface Sink {
  kind: "postfix smtp-sink" | "node sink";
  url: string;
  pid: number;
  stats(): Promise<SinkStats>;
  /** Counts from zero again. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

const REPO = new URL("../", import.meta.url);

export function postfixSinkPath(): string | null {
  for (const p of ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]) if (existsSync(p)) return p;
  const found = spawnSync("sh", ["-c", "command -v smtp-sink"], { encoding: "utf8" });
  return found.status === 0 && found.stdout.trim() ? found.stdout.trim() : null;
}

export async function startSink(opts: { prefer: "auto" | "postfix" | "node"; record?: boolean }): Promise<Sink> {
  const postfix = opts.prefer !== "node" && !opts.record ? postfixSinkPath() : null;
  if (opts.prefer === "postfix" && !postfix) throw new Error("postfix's smtp-sink is not installed (apt-get install -y postfix)");
  return postfix ? startPostfixSink(postfix) : startNodeSink(!!opts.record);
}

async function startPostfixSink(bin: string): Promise<Sink> {
  const port = await freePort();
  // -u: it refuses to run as root otherwise; 1024: listen backlog.
  const args = [...(process.getuid?.() === 0 ? ["-u", "nobody"] : []), `127.0.0.1:${port}`, "1024"];
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  await waitForPort(port, child, () => stderr);
  return {
    kind: "postfix smtp-sink",
    url: `smtp://127.0.0.1:${port}`,
    pid: child.pid!,
    async stats() {
      return { messages: null };
    },
    async reset() {},
    close: () => stopChild(child),
  };
}

async function startNodeSink(record: boolean): Promise<Sink> {
  const script = new URL("bench/sink-server.mts", REPO).pathname;
  const child = spawn(process.execPath, ["--import", "tsx", script, ...(record ? ["--record"] : [])], {
    cwd: REPO.pathname,
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  const line = await new Promise<string>((res, rej) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once("line", (l) => res(l));
    child.once("exit", (code) => rej(new Error(`bench sink exited with ${code}`)));
  });
  const { port } = JSON.parse(line) as { port: number };
  let seq = 0;
  type Answer = { seq: number; original: KindStats; correction: KindStats; other: KindStats; distinctOriginals: number; duplicates: number; replyTo: string | null };
  const ask = (op: "stats" | "reset") =>
    new Promise<Answer>((res) => {
      const mine = ++seq;
      const on = (m: unknown) => {
        if ((m as Answer).seq !== mine) return;
        child.off("message", on);
        res(m as Answer);
      };
      child.on("message", on);
      child.send({ op, seq: mine });
    });
  return {
    kind: "node sink",
    url: `smtp://127.0.0.1:${port}`,
    pid: child.pid!,
    async stats() {
      const s = await ask("stats");
      return { messages: s.original.messages + s.correction.messages + s.other.messages, original: s.original, correction: s.correction, other: s.other, distinctOriginals: s.distinctOriginals, duplicates: s.duplicates, replyTo: s.replyTo };
    },
    async reset() {
      await ask("reset");
    },
    close: () => stopChild(child),
  };
}

async function waitForPort(port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const { connect } = await import("node:net");
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`smtp-sink exited with ${child.exitCode}: ${stderr()}`);
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, "127.0.0.1", () => (s.destroy(), res(true)));
      s.once("error", () => res(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`smtp-sink did not listen on ${port}: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 50)); // the sink is starting: poll its port until the deadline
  }
}

export function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  return new Promise<void>((res) => {
    if (child.exitCode !== null || child.signalCode !== null) return res();
    const force = setTimeout(() => child.kill("SIGKILL"), graceMs);
    child.once("exit", () => {
      clearTimeout(force);
      res();
    });
    child.kill("SIGTERM");
  });
}
