/**
 * A whole Airlock for an integration test: its own redis-server, a recording SMTP sink, the API on
 * a free port and the workers, all in this process. `call` speaks the JSON API as a given user.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { loadConfig } from "../../src/config.js";
import { createRuntime, type PurgeSetup, type Runtime } from "../../src/runtime.js";
import { createSmtpTransport, type MailTransport } from "../../src/mail/transport.js";
import { startSmtpSink, type SmtpSink } from "./smtp-sink.js";
import { startTestRedis, type TestRedis } from "./redis.js";

export const USERS = {
  author: { email: "author@corp.example", name: "Avery Author", roles: ["author"] },
  author2: { email: "author2@corp.example", name: "Ash Author", roles: ["author"] },
  approver1: { email: "approver1@corp.example", name: "Blake Approver", roles: ["approver"] },
  approver2: { email: "approver2@corp.example", name: "Casey Approver", roles: ["approver"] },
  authorApprover: { email: "both@corp.example", name: "Bo Both", roles: ["author", "approver"], senders: [{ address: "ceo@corp.example", name: "CEO" }] },
  ops: { email: "ops@corp.example", name: "Drew Oncall", roles: ["ops"] },
  admin: { email: "admin@corp.example", name: "Eli Admin", roles: ["admin"] },
} as const;
export type UserKey = keyof typeof USERS;
export const tokenOf = (u: UserKey) => `test-token-${u}-0123456789abcdef`;

/** A clock a test can move forward; BullMQ's own delays still run on real time. */
export class TestClock {
  offsetMs = 0;
  now = () => Date.now() + this.offsetMs;
  advance(ms: number): void {
    this.offsetMs += ms;
  }
}

export interface TestAirlock {
  rt: Runtime;
  clock: TestClock;
  url: string;
  redis: TestRedis;
  sink: SmtpSink;
  call(user: UserKey | null, method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<{ status: number; body: any }>;
  /** Polls until `check` returns a value that is not undefined/false, or fails after the deadline. */
  until<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, deadlineMs?: number): Promise<T>;
  /**
   * Stops this process's workers without waiting for their jobs (BullMQ's forced close: what a
   * crash leaves behind, in process) and starts new ones. The kill -9 of a real process is in
   * test/faults/crashes.test.ts.
   */
  crashWorkers(): Promise<void>;
  stop(): Promise<void>;
}

export async function startAirlock(
  env: Record<string, string> = {},
  opts: {
    logger?: Logger;
    /** Wraps the SMTP transport to the sink (every mail the workers send goes through it): to act between a claim and its hand-off. */
    wrapTransport?: (real: MailTransport) => MailTransport;
    /** A purge connector and its pace (instead of the PURGE_* settings). */
    purge?: PurgeSetup;
    /** The API's port (default: any free one): for a test whose PUBLIC_URL must be known before the start (an OpenID Connect redirect URL). */
    port?: number;
  } = {},
): Promise<TestAirlock> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-test-"));
  const redis = await startTestRedis();
  const sink = await startSmtpSink();
  const usersFile = join(dir, "users.json");
  writeFileSync(usersFile, JSON.stringify({ users: Object.entries(USERS).map(([k, u]) => ({ ...u, token: tokenOf(k as UserKey) })) }));
  const config = loadConfig({
    NODE_ENV: "test",
    REDIS_URL: redis.url,
    SMTP_URL: sink.url,
    USERS_FILE: usersFile,
    LINK_SECRET: "test-link-secret-0123456789abcdef0123456789",
    HOLD_MIN_SECONDS: "1",
    SEND_RATE_PER_SECOND: "1000000",
    LOG_LEVEL: "silent",
    // Tests call the API far faster than a person; the limits have their own test.
    API_RATE_LIMIT_PER_MINUTE: "1000000",
    LINK_RATE_LIMIT_PER_MINUTE: "1000000",
    // Large audiences go all at once unless a test stages them: staged sends have their own tests
    // (test/integration/staged-sends.test.ts), the rest test the fan-out itself.
    WAVES_THRESHOLD: "0",
    ...env,
  });
  const clock = new TestClock();
  const transport = opts.wrapTransport?.(createSmtpTransport({ url: config.SMTP_URL!, poolSize: config.SMTP_POOL_SIZE }));
  const rt = await createRuntime({ config, clock, dataDir: dir, logger: opts.logger ?? pino({ level: "silent" }), ...(transport ? { transport } : {}), ...(opts.purge ? { purge: opts.purge } : {}), inboundPort: 0 });
  const { url } = await rt.startApi(opts.port ?? 0);
  let workers = await rt.startWorkers();

  const call: TestAirlock["call"] = async (user, method, path, body, headers = {}) => {
    const h: Record<string, string> = { ...headers };
    if (user) h.authorization = `Bearer ${tokenOf(user)}`;
    let payload: string | undefined;
    if (body !== undefined) {
      payload = typeof body === "string" ? body : JSON.stringify(body);
      h["content-type"] ??= "application/json";
    }
    const res = await fetch(url + path, { method, headers: h, body: payload });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // not JSON (a page): keep the text
    }
    return { status: res.status, body: parsed };
  };

  const until: TestAirlock["until"] = async (what, check, deadlineMs = 30_000) => {
    const end = Date.now() + deadlineMs;
    for (;;) {
      const v = await check();
      if (v !== undefined && v !== false) return v as never;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 25)); // poll interval for a state reached by background workers
    }
  };

  return {
    rt,
    clock,
    url,
    redis,
    sink,
    call,
    until,
    async crashWorkers() {
      await workers.close({ force: true });
      workers = await rt.startWorkers();
    },
    async stop() {
      await rt.stop();
      await sink.close();
      await redis.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
