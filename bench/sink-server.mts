/**
 * The benchmark's fallback SMTP sink (when postfix's `smtp-sink` is not installed), run as its own
 * process so it never shares an event loop with the driver or the service. It does the least an
 * SMTP server can: every command gets its 250 (PIPELINING announced, so a client may batch them),
 * the body is scanned only for its end and, in its header section, for the Message-ID, which tells
 * a fan-out's original (`<airlock.<id>.…>`) from its correction (`<airlock-correction.…>`) and from
 * anything else (notifications to authors and approvers).
 *
 * Counts come back over IPC (`{op: "stats"}`), `{op: "reset"}` clears them. With `--record`, the
 * distinct envelope recipients of originals are kept (the recall race compares them with what the
 * recall answered); a recipient received twice is counted in `duplicates`; and the first Reply-To
 * address an original carried (a staged send's early waves reply to Airlock's inbound listener:
 * the staged phase answers to it).
 *
 * Usage: node --import tsx bench/sink-server.mts [--record]; prints `{"port": N}` on stdout when listening.
 */
import { createServer, type Socket } from "node:net";

const record = process.argv.includes("--record");

interface KindStats {
  messages: number;
  recipients: number;
  firstAt: number;
  lastAt: number;
}
const fresh = (): KindStats => ({ messages: 0, recipients: 0, firstAt: 0, lastAt: 0 });
let original = fresh();
let correction = fresh();
let other = fresh();
let originals = new Set<string>();
let duplicates = 0;
let replyTo: string | null = null;

const END = Buffer.from("\r\n.\r\n");

function handle(sock: Socket): void {
  sock.setNoDelay(true);
  let buf = "";
  let inData = false;
  let tail = Buffer.alloc(0); // last bytes of the body seen, to find an end split across chunks
  let head = ""; // the body's header section, until its end is seen (classifies original/correction)
  let headDone = false;
  let kind: "original" | "correction" | "other" = "other";
  let rcpts: string[] = [];
  sock.write("220 bench-sink ESMTP\r\n");

  const finishData = () => {
    const s = kind === "original" ? original : kind === "correction" ? correction : other;
    const now = Date.now();
    s.messages++;
    s.recipients += rcpts.length;
    if (!s.firstAt) s.firstAt = now;
    s.lastAt = now;
    if (record && kind === "original") {
      for (const r of rcpts) {
        if (originals.has(r)) duplicates++;
        else originals.add(r);
      }
    }
    rcpts = [];
  };

  const commands = (text: string) => {
    buf += text;
    let out = "";
    for (;;) {
      const nl = buf.indexOf("\r\n");
      if (nl < 0) break;
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      const verb = line.slice(0, 4).toUpperCase();
      if (verb === "EHLO") out += "250-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SIZE 104857600\r\n";
      else if (verb === "RCPT") {
        const m = /<([^>]*)>/.exec(line);
        rcpts.push((m?.[1] ?? "").toLowerCase());
        out += "250 2.1.5 Ok\r\n";
      } else if (verb === "MAIL") {
        rcpts = [];
        out += "250 2.1.0 Ok\r\n";
      } else if (verb === "DATA") {
        out += "354 End data with <CR><LF>.<CR><LF>\r\n";
        inData = true;
        head = "";
        headDone = false;
        kind = "other";
        tail = Buffer.alloc(0);
        // The rest of the buffer (if the client pipelined the body) is body bytes.
        const rest = buf;
        buf = "";
        if (out) sock.write(out);
        out = "";
        if (rest) body(Buffer.from(rest, "latin1"));
        return;
      } else if (verb === "QUIT") {
        sock.end("221 Bye\r\n");
        return;
      } else out += "250 Ok\r\n"; // HELO, RSET, NOOP: accepted
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
        kind = /^airlock\.\d+\./.test(id) ? "original" : id.startsWith("airlock-correction.") ? "correction" : "other";
        if (record && kind === "original" && replyTo === null) replyTo = replyToOf(end >= 0 ? head.slice(0, end) : head);
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
    finishData();
    sock.write("250 2.0.0 Ok: queued\r\n");
    const rest = joined.subarray(at + END.length);
    if (rest.length) commands(rest.toString("latin1"));
  };

  sock.on("data", (chunk: Buffer) => (inData ? body(chunk) : commands(chunk.toString("latin1"))));
  sock.on("error", () => {}); // a client that hangs up mid-transaction is not the sink's problem
}

/** The address of a header section's Reply-To (folded lines joined), or null. */
function replyToOf(header: string): string | null {
  const v = /(?:^|\r\n)Reply-To:[ \t]*([^\r\n]*(?:\r\n[ \t][^\r\n]*)*)/i.exec(header)?.[1]?.replace(/\r\n[ \t]+/g, " ");
  if (!v) return null;
  return (/<([^>]+)>/.exec(v)?.[1] ?? v).trim().toLowerCase() || null;
}

const server = createServer(handle);
server.listen(0, "127.0.0.1", () => {
  const addr = server.address();
  process.stdout.write(JSON.stringify({ port: typeof addr === "object" && addr ? addr.port : 0 }) + "\n");
});

process.on("message", (msg: { op: string; seq: number }) => {
  if (msg.op === "reset") {
    original = fresh();
    correction = fresh();
    other = fresh();
    originals = new Set();
    duplicates = 0;
    replyTo = null;
  }
  process.send?.({ seq: msg.seq, original, correction, other, distinctOriginals: originals.size, duplicates, replyTo, recorded: record });
});
process.on("disconnect", () => process.exit(0));
