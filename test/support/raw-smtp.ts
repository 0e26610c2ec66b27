/**
 * A bare SMTP client on a socket, for protocol-level tests: what a server answers to each
 * command, including refusals a mail library would hide or retry. Replies are read whole
 * (multi-line "250-…" continuations up to the "250 …" line). No timers: every wait is for bytes
 * or for the socket to close.
 */
import { connect, type Socket } from "node:net";

export interface SmtpReply {
  code: number;
  text: string;
}

export class RawSmtp {
  private buffer = "";
  private readonly replies: SmtpReply[] = [];
  private readonly waiters: Array<(r: SmtpReply | null) => void> = [];
  private ended = false;
  readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket) {
    socket.setEncoding("latin1");
    socket.on("data", (d: string) => this.onData(d));
    socket.on("error", () => {}); // a refused session may be reset; `closed` tells the test
    this.closed = new Promise((resolve) => socket.once("close", () => {
      this.ended = true;
      for (const w of this.waiters.splice(0)) w(null);
      resolve();
    }));
  }

  static async open(port: number): Promise<RawSmtp> {
    const socket = connect(port, "127.0.0.1");
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
    return new RawSmtp(socket);
  }

  private onData(d: string): void {
    this.buffer += d;
    let lines: string[] = [];
    for (;;) {
      const nl = this.buffer.indexOf("\r\n");
      if (nl < 0) break;
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 2);
      lines.push(line);
      if (/^\d{3}(?: |$)/.test(line)) {
        const reply = { code: Number(line.slice(0, 3)), text: lines.map((l) => l.slice(4)).join("\n") };
        lines = [];
        const w = this.waiters.shift();
        if (w) w(reply);
        else this.replies.push(reply);
      }
    }
    if (lines.length) this.buffer = lines.map((l) => `${l}\r\n`).join("") + this.buffer;
  }

  /** The next reply, or null when the server closed the connection first. */
  reply(): Promise<SmtpReply | null> {
    const r = this.replies.shift();
    if (r) return Promise.resolve(r);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  async command(line: string): Promise<SmtpReply | null> {
    this.write(`${line}\r\n`);
    return this.reply();
  }

  /** Greeting and EHLO. */
  static async session(port: number): Promise<{ smtp: RawSmtp; greeting: SmtpReply | null; ehlo: SmtpReply | null }> {
    const smtp = await RawSmtp.open(port);
    const greeting = await smtp.reply();
    const ehlo = greeting && greeting.code === 220 ? await smtp.command("EHLO client.example") : null;
    return { smtp, greeting, ehlo };
  }

  async quit(): Promise<void> {
    if (!this.ended) this.socket.end("QUIT\r\n");
    await this.closed;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
