/**
 * Dashboard clients of the recall-under-load phase, in a process of their own (so their reading
 * neither slows nor is slowed by the driver's timing of the recalls): `--count` clients on
 * `GET /api/stream` with a bearer token, each reading its stream as a browser's EventSource
 * would (every byte consumed, frames counted), and with `--slow` one more client that never
 * reads (its socket fills; the service must drop it rather than buffer for it).
 *
 * IPC: `stats`; `close-readers` (ends the readers, keeps the slow one); `read-slow` (the slow
 * client starts reading: answers what it got once its stream ended or was quiet for `quietMs`).
 * Usage: node --import tsx bench/sse-clients.mts --url U --token T --count N [--slow];
 * prints `{"connected": N}` once every stream answered 200.
 */
import { request, type IncomingMessage } from "node:http";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({ options: { url: { type: "string" }, token: { type: "string" }, count: { type: "string", default: "100" }, slow: { type: "boolean", default: false } } });

interface Client {
  res: IncomingMessage | null;
  bytes: number;
  frames: number;
  ended: boolean;
  error: string | null;
}

function open(reading: boolean): Promise<Client> {
  const c: Client = { res: null, bytes: 0, frames: 0, ended: false, error: null };
  return new Promise((resolve, reject) => {
    const req = request(`${args.url}/api/stream`, { headers: { authorization: `Bearer ${args.token}`, accept: "text/event-stream" } }, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`GET /api/stream: HTTP ${res.statusCode}`));
      c.res = res;
      res.on("end", () => (c.ended = true));
      res.on("close", () => (c.ended = true));
      res.on("error", (e) => (c.error = e.message));
      if (reading) consume(c);
      else res.pause(); // never read: the socket's buffers fill and the server sees backpressure
      resolve(c);
    });
    req.on("error", (e) => {
      c.error = e.message;
      reject(e);
    });
    req.end();
  });
}

function consume(c: Client): void {
  c.res!.on("data", (chunk: Buffer) => {
    c.bytes += chunk.length;
    // A frame ends with a blank line; one split across chunks is rare enough not to matter here.
    for (let at = chunk.indexOf("\n\n"); at >= 0; at = chunk.indexOf("\n\n", at + 2)) c.frames++;
  });
  c.res!.resume();
}

const readers = await Promise.all(Array.from({ length: Number(args.count) }, () => open(true)));
const slow = args.slow ? await open(false) : null;
process.stdout.write(JSON.stringify({ connected: readers.length + (slow ? 1 : 0) }) + "\n");

const summary = (cs: Client[]) => ({
  clients: cs.length,
  open: cs.filter((c) => !c.ended).length,
  bytes: cs.reduce((n, c) => n + c.bytes, 0),
  frames: cs.reduce((n, c) => n + c.frames, 0),
  minFrames: cs.length ? Math.min(...cs.map((c) => c.frames)) : 0,
  errors: cs.filter((c) => c.error).length,
});

process.on("message", (msg: { op: string; seq: number; quietMs?: number }) => {
  const answer = (a: object) => process.send?.({ seq: msg.seq, ...a });
  if (msg.op === "stats") answer({ readers: summary(readers), slow: slow && { ended: slow.ended, bytes: slow.bytes } });
  else if (msg.op === "close-readers") {
    for (const c of readers) c.res?.destroy();
    answer({ closed: readers.length });
  } else if (msg.op === "read-slow") {
    if (!slow) return answer({ bytes: 0, ended: false });
    consume(slow);
    // Whatever the kernel and the server still held for it arrives now, then (if it was dropped) its end.
    let last = slow.bytes;
    let quietSince = Date.now();
    const check = setInterval(() => {
      if (slow.bytes !== last) (last = slow.bytes), (quietSince = Date.now());
      if (slow.ended || Date.now() - quietSince > (msg.quietMs ?? 2000)) {
        clearInterval(check);
        answer({ bytes: slow.bytes, ended: slow.ended });
      }
    }, 50);
  }
});
process.on("disconnect", () => process.exit(0));
