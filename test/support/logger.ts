/** A pino logger whose JSON lines are parsed into `lines`, for tests that assert what was logged. */
import { Writable } from "node:stream";
import { pino, type Logger } from "pino";

export function capturingLogger(level = "info"): { logger: Logger; lines: Array<{ level: number; msg: string } & Record<string, unknown>> } {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split("\n").filter(Boolean)) lines.push(JSON.parse(l));
      done();
    },
  });
  return { logger: pino({ level }, sink), lines };
}
