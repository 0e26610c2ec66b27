/**
 * A bench helper process (`node --import tsx <script>`) that prints one JSON line when ready and
 * answers `{op, seq, ...}` messages over IPC with `{seq, ...}`: the load sink and the dashboard
 * clients of the recall-under-load phase.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { stopChild } from "./sink.js";

const REPO = new URL("../", import.meta.url).pathname;

export interface HelperProcess<Ready> {
  ready: Ready;
  pid: number;
  ask<A>(op: string, extra?: Record<string, unknown>): Promise<A>;
  close(): Promise<void>;
}

export async function startHelper<Ready>(script: string, args: string[]): Promise<HelperProcess<Ready>> {
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", new URL(script, import.meta.url).pathname, ...args], {
    cwd: REPO,
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  const line = await new Promise<string>((res, rej) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once("line", (l) => res(l));
    child.once("exit", (code) => rej(new Error(`${script} exited with ${code}`)));
  });
  let seq = 0;
  return {
    ready: JSON.parse(line) as Ready,
    pid: child.pid!,
    ask<A>(op: string, extra: Record<string, unknown> = {}) {
      return new Promise<A>((res, rej) => {
        const mine = ++seq;
        const gone = () => rej(new Error(`${script} exited before answering ${op}`));
        const on = (m: unknown) => {
          if ((m as { seq?: number }).seq !== mine) return;
          child.off("message", on);
          child.off("exit", gone);
          res(m as A);
        };
        child.on("message", on);
        child.once("exit", gone);
        child.send({ ...extra, op, seq: mine });
      });
    },
    close: () => stopChild(child),
  };
}
