/**
 * What the local stand-ins for Microsoft Graph and the Gmail API (fake-graph.ts, fake-gmail.ts)
 * share: a plain node:http server on a free loopback port, a log of the requests, the most
 * requests it was ever answering at once, and a hook through which a test makes one request
 * answer otherwise (throttled, failing, dropped, never answered).
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo, Socket } from "node:net";

export interface SeenRequest {
  method: string;
  /** Path and query as sent (still percent-encoded). */
  url: string;
  status?: number;
}

/** What a test's hook may make a request answer instead of the API's own answer. */
export type Override = { status: number; headers?: Record<string, string>; body?: unknown } | "drop" | "hang";
/** May answer later (a promise): the request is then in flight meanwhile. */
export type Hook = (req: SeenRequest) => Override | undefined | Promise<Override | undefined>;

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
}

export interface FakeHttp {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  requests: SeenRequest[];
  /** Errors the stand-in itself threw (each answered 500); a test's afterEach expects none. */
  bugs: unknown[];
  /** The most requests being answered at once since the start. */
  maxInFlight(): number;
  /** Set by tests: consulted before the API answers; undefined lets it answer. */
  hook: Hook | undefined;
  stop(): Promise<void>;
}

/** Starts the server; `handle` is the API, answering from the request and its body. */
export async function startFakeHttp(handle: (req: IncomingMessage, url: URL, body: string) => Answer): Promise<FakeHttp> {
  const sockets = new Set<Socket>();
  let inFlight = 0;
  let most = 0;
  const fake: FakeHttp = {
    origin: "",
    requests: [],
    bugs: [],
    maxInFlight: () => most,
    hook: undefined,
    stop: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
  const server = createServer((req, res) => {
    inFlight++;
    most = Math.max(most, inFlight);
    res.on("close", () => inFlight--);
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", async () => {
      const seen: SeenRequest = { method: req.method ?? "GET", url: req.url ?? "/" };
      fake.requests.push(seen);
      const override = await fake.hook?.(seen);
      if (override === "drop") return void req.socket.destroy();
      if (override === "hang") return; // answered never: the socket is destroyed at stop()
      let answer: Answer;
      try {
        answer = override ?? handle(req, new URL(req.url ?? "/", fake.origin), Buffer.concat(chunks).toString("utf8"));
      } catch (err) {
        // A bug of the stand-in: answered (so that no test waits for its timeouts) and kept for the test to see.
        fake.bugs.push(err);
        answer = { status: 500, body: { bug: String(err) } };
      }
      seen.status = answer.status;
      send(res, answer);
    });
  });
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  fake.origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return fake;
}

function send(res: ServerResponse, a: Answer): void {
  const body = a.body === undefined ? "" : typeof a.body === "string" ? a.body : JSON.stringify(a.body);
  res.writeHead(a.status, { ...(body ? { "content-type": "application/json; charset=utf-8" } : {}), ...a.headers });
  res.end(body);
}

/** A form body (application/x-www-form-urlencoded) as an object. */
export function formOf(body: string): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(body));
}

/** The bearer token of a request, or undefined. */
export function bearerOf(req: IncomingMessage): string | undefined {
  return /^Bearer (\S+)$/.exec(req.headers.authorization ?? "")?.[1];
}
