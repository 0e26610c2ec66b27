/**
 * The SMTP sink of the recall-under-load phase (bench/recall-under-load.ts), a process of its own.
 * Like bench/sink-server.mts (every command 250, PIPELINING, the body scanned only for its end and
 * its Message-ID), plus:
 *
 * - **per message**: for each original (`<airlock.<id>.…>`), its transactions, recipients, when the
 *   last transaction was handed over (its MAIL FROM arrived: the hand-off) and when it ended, and,
 *   while it has at most TRACK_LIMIT recipients, the distinct ones (the small recalled messages'
 *   `sentAfterAck` is computed from them; the million-recipient fan-outs are only counted);
 * - **a slow domain**: an original transaction with a recipient at `--slow-domain` is answered
 *   `--slow-ms` after its end of data (its connection waits, as a slow relay's would). That is how
 *   the phase keeps small messages `sending` long enough to be recalled mid-way, without slowing
 *   the large fan-out's own transactions.
 *
 * IPC: `{op: "stats"}` answers `{messages: {[id]: MessageStats}, totals}`; `{op: "reset"}` clears.
 * Usage: node --import tsx bench/load-sink-server.mts [--slow-domain D] [--slow-ms N]; prints
 * `{"port": N}` on stdout when listening.
 */
import { createServer, type Socket } from "node:net";
import { parseArgs } from "node:util";

const { values: args } = parseArgs({ options: { "slow-domain": { type: "string", default: "slow.example" }, "slow-ms": { type: "string", default: "250" } } });
const SLOW_SUFFIX = "@" + args["slow-domain"]!.toLowerCase();
const SLOW_MS = Number(args["slow-ms"]);
/** Distinct recipients are kept per message up to this many (a million-recipient fan-out is only counted). */
const TRACK_LIMIT = 20_000;

export interface MessageStats {
  transactions: number;
  recipients: number;
  /** MAIL FROM of its last transaction (the hand-off), and when its last transaction was answered (epoch ms). */
  lastHandoffAt: number;
  lastEndAt: number;
  firstHandoffAt: number;
  /** Distinct recipients, or null once past TRACK_LIMIT. */
  distinct: number | null;
  duplicates: number;
}
interface Tracked extends Omit<MessageStats, "distinct"> {
  seen: Set<string> | null;
}
let byMessage = new Map<string, Tracked>();
let totals = { original: 0, correction: 0, other: 0 };

const END = Buffer.from("\r\n.\r\n");

function record(id: string, rcpts: string[], handoffAt: number, endAt: number): void {
  let t = byMessage.get(id);
  if (!t) byMessage.set(id, (t = { transactions: 0, recipients: 0, lastHandoffAt: 0, lastEndAt: 0, firstHandoffAt: handoffAt, duplicates: 0, seen: new Set() }));
  t.transactions++;
  t.recipients += rcpts.length;
  t.lastHandoffAt = Math.max(t.lastHandoffAt, handoffAt);
  t.lastEndAt = Math.max(t.lastEndAt, endAt);
  t.firstHandoffAt = Math.min(t.firstHandoffAt, handoffAt);
  if (t.seen) {
    for (const r of rcpts) {
      if (t.seen.has(r)) t.duplicates++;
      else t.seen.add(r);
    }
    if (t.seen.size > TRACK_LIMIT) t.seen = null;
  }
}

function handle(sock: Socket): void {
  sock.setNoDelay(true);
  let buf = "";
  let inData = false;
  let tail = Buffer.alloc(0);
  let head = "";
  let headDone = false;
  let messageId = "";
  let kind: "original" | "correction" | "other" = "other";
  let rcpts: string[] = [];
  let slow = false;
  let handoffAt = 0;
  sock.write("220 load-sink ESMTP\r\n");

  const commands = (text: string) => {
    buf += text;
    let out = "";
    for (;;) {
      const nl = buf.indexOf("\r\n");
      if (nl < 0) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === "EHLO") out += "250-load-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n";
      else if (verb === "RCPT") {
        const r = (/<([^>]*)>/.exec(line)?.[1] ?? "").toLowerCase();
        rcpts.push(r);
        if (r.endsWith(SLOW_SUFFIX)) slow = true;
        out += "250 2.1.5 Ok\r\n";
      } else if (verb === "MAIL") {
        rcpts = [];
        slow = false;
        handoffAt = Date.now();
        out += "250 2.1.0 Ok\r\n";
      } else if (verb === "DATA") {
        out += "354 End data with <CR><LF>.<CR><LF>\r\n";
        inData = true;
        head = "";
        headDone = false;
        kind = "other";
        messageId = "";
        tail = Buffer.alloc(0);
        const rest = buf;
        buf = "";
        sock.write(out);
        if (rest) body(Buffer.from(rest, "latin1"));
        return;
      } else if (verb === "QUIT") {
        sock.end("221 Bye\r\n");
        return;
      } else out += "250 Ok\r\n";
    }
    if (out) sock.write(out);
  };

  const body = (chunk: Buffer) => {
    if (!headDone) {
      head += chunk.subarray(0, 65536).toString("latin1");
      const end = head.indexOf("\r\n\r\n");
      if (end >= 0 || head.length > 65536) {
        headDone = true;
        const id = /(?:^|\r\n)Message-ID:\s*<([^>]*)>/i.exec(end >= 0 ? head.slice(0, end) : head)?.[1] ?? "";
        const original = /^airlock\.(\d+)\./.exec(id);
        kind = original ? "original" : id.startsWith("airlock-correction.") ? "correction" : "other";
        messageId = original?.[1] ?? "";
        head = "";
      }
    }
    const joined = tail.length ? Buffer.concat([tail, chunk]) : chunk;
    const at = joined.indexOf(END);
    if (at < 0) {
      tail = Buffer.from(joined.subarray(Math.max(0, joined.length - 4)));
      return;
    }
    inData = false;
    totals[kind]++;
    const rest = joined.subarray(at + END.length);
    const [id, got, from, isOriginal] = [messageId, rcpts, handoffAt, kind === "original"];
    const finish = () => {
      // The transaction ends when it is answered (for a slow one, after the wait).
      if (isOriginal) record(id, got, from, Date.now());
      sock.write("250 2.0.0 Ok: queued\r\n");
      if (rest.length) commands(rest.toString("latin1"));
    };
    if (slow && kind === "original" && SLOW_MS > 0) {
      // The client waits for this answer before its next transaction on the connection; anything
      // it pipelined meanwhile waits too.
      sock.pause();
      setTimeout(() => {
        finish();
        sock.resume();
      }, SLOW_MS);
    } else finish();
  };

  sock.on("data", (chunk: Buffer) => (inData ? body(chunk) : commands(chunk.toString("latin1"))));
  sock.on("error", () => {});
}

const server = createServer(handle);
server.listen(0, "127.0.0.1", () => {
  const addr = server.address();
  process.stdout.write(JSON.stringify({ port: typeof addr === "object" && addr ? addr.port : 0 }) + "\n");
});

process.on("message", (msg: { op: string; seq: number }) => {
  if (msg.op === "reset") {
    byMessage = new Map();
    totals = { original: 0, correction: 0, other: 0 };
  }
  const messages: Record<string, MessageStats> = {};
  for (const [id, t] of byMessage) {
    const { seen, ...rest } = t;
    messages[id] = { ...rest, distinct: seen ? seen.size : null };
  }
  process.send?.({ seq: msg.seq, messages, totals });
});
process.on("disconnect", () => process.exit(0));
