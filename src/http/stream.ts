/**
 * GET /api/stream: Server-Sent Events of every state change and fan-out progress. One Redis
 * subscriber per process feeds every connected client.
 */
import type { Request, Response } from "express";
import type { Redis } from "ioredis";
import { keys } from "../store/keys.js";
import { currentUser } from "./auth.js";

/** A comment line every 20 s keeps proxies from closing an idle stream. */
const HEARTBEAT_MS = 20_000;

export class EventStream {
  /** Each client, with the check that its sign-in still holds (re-run at every heartbeat). */
  private readonly clients = new Map<Response, () => Promise<boolean>>();
  private readonly heartbeat: NodeJS.Timeout;

  constructor(private readonly subscriber: Redis) {
    subscriber.subscribe(keys.events()).catch(() => {
      // Redis down: ioredis re-subscribes on reconnect by itself.
    });
    subscriber.on("message", (_channel: string, payload: string) => this.broadcast(payload));
    this.heartbeat = setInterval(() => {
      for (const [c, allowed] of this.clients) {
        // Signed out, session expired, or removed from USERS_FILE since the stream opened: close it.
        allowed().then(
          (ok) => (ok ? this.send(c, ": keep-alive\n\n") : this.drop(c)),
          () => this.send(c, ": keep-alive\n\n"), // Redis unreachable: keep the stream; the next beat asks again
        );
      }
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  /** The GET /api/stream handler; `stillAllowed` says whether the caller's sign-in still holds. */
  handler(stillAllowed: (req: Request) => Promise<boolean>) {
    return (req: Request, res: Response): void => {
      currentUser(req);
      res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-store", Connection: "keep-alive", "X-Accel-Buffering": "no" });
      res.write("retry: 2000\n\n"); // the browser reconnects after 2 s by itself
      this.clients.set(res, () => stillAllowed(req));
      req.on("close", () => this.clients.delete(res));
    };
  }

  /** A client that does not read (its socket buffer is full) is dropped rather than buffered for without limit; it reconnects and re-reads. */
  private send(c: Response, frame: string): void {
    if (!c.write(frame)) this.drop(c);
  }

  private drop(c: Response): void {
    this.clients.delete(c);
    c.end();
  }

  private broadcast(payload: string): void {
    let kind = "state";
    try {
      kind = (JSON.parse(payload) as { kind?: string }).kind ?? "state";
    } catch {
      return; // not ours
    }
    const frame = `event: ${kind}\ndata: ${payload}\n\n`;
    for (const c of [...this.clients.keys()]) this.send(c, frame);
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const c of this.clients.keys()) c.end();
    this.clients.clear();
  }
}
