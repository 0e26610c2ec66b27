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
  private readonly clients = new Set<Response>();
  private readonly heartbeat: NodeJS.Timeout;

  constructor(private readonly subscriber: Redis) {
    subscriber.subscribe(keys.events()).catch(() => {
      // Redis down: ioredis re-subscribes on reconnect by itself.
    });
    subscriber.on("message", (_channel: string, payload: string) => this.broadcast(payload));
    this.heartbeat = setInterval(() => {
      for (const c of this.clients) c.write(": keep-alive\n\n");
    }, HEARTBEAT_MS);
    this.heartbeat.unref();
  }

  handler = (req: Request, res: Response): void => {
    currentUser(req);
    res.writeHead(200, { "Content-Type": "text/event-stream", "Cache-Control": "no-store", Connection: "keep-alive", "X-Accel-Buffering": "no" });
    res.write("retry: 2000\n\n"); // the browser reconnects after 2 s by itself
    this.clients.add(res);
    req.on("close", () => this.clients.delete(res));
  };

  private broadcast(payload: string): void {
    let kind = "state";
    try {
      kind = (JSON.parse(payload) as { kind?: string }).kind ?? "state";
    } catch {
      return; // not ours
    }
    const frame = `event: ${kind}\ndata: ${payload}\n\n`;
    for (const c of this.clients) c.write(frame);
  }

  close(): void {
    clearInterval(this.heartbeat);
    for (const c of this.clients) c.end();
    this.clients.clear();
  }
}
