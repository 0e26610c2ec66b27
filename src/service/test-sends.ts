/**
 * "Send me a test": how a test mail leaves (the runtime's mail transport, one recipient) and how
 * often an author may ask for one. The limit is kept in Redis, so it holds across every API
 * process (`npm run start:api` may run several behind a balancer), as a sliding window: at most
 * TEST_SENDS_PER_WINDOW in any TEST_SEND_WINDOW_MS, however the requests fall on minute boundaries.
 */
import { randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { Clock } from "../domain/clock.js";
import type { MailTransport } from "../mail/transport.js";
import { keys } from "../store/keys.js";

/** Test sends one author may ask for per window. */
export const TEST_SENDS_PER_WINDOW = 5;
export const TEST_SEND_WINDOW_MS = 60_000;

/** Mails one built message to one address; rejects when it was not accepted. */
export interface TestMail {
  send(to: string, raw: Buffer, envelopeFrom: string): Promise<void>;
}

/** Takes one test send from an author's allowance: null when allowed, else the milliseconds until one is free again. */
export interface TestSendLimit {
  take(author: string): Promise<number | null>;
}

/** A TestMail through the transport the fan-out uses (one transaction, one envelope recipient). */
export function testMailThrough(transport: Pick<MailTransport, "send">): TestMail {
  return {
    async send(to, raw, envelopeFrom) {
      const result = await transport.send({ from: envelopeFrom, to: [to] }, raw);
      const refused = result.rejected[0];
      if (refused || !result.accepted.length) throw new Error(`the test mail to ${to} was refused: ${refused?.code ?? ""} ${refused?.response ?? "not accepted"}`.trim());
    },
  };
}

/**
 * KEYS[1] the author's sorted set (keys.testSends). ARGV[1] now (ms), ARGV[2] window (ms), ARGV[3]
 * limit, ARGV[4] a unique member. Answers -1 when the send is taken (and recorded), else the
 * milliseconds until the oldest send in the window leaves it.
 */
const TAKE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + tonumber(ARGV[2]) - tonumber(ARGV[1]))
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return -1
`;

export class RedisTestSendLimit implements TestSendLimit {
  constructor(
    private readonly redis: Redis,
    private readonly clock: Clock,
    private readonly limit = TEST_SENDS_PER_WINDOW,
    private readonly windowMs = TEST_SEND_WINDOW_MS,
  ) {}

  async take(author: string): Promise<number | null> {
    const now = this.clock.now();
    const member = `${now}:${randomBytes(6).toString("hex")}`;
    const wait = Number(await this.redis.eval(TAKE, 1, keys.testSends(author.trim().toLowerCase()), now, this.windowMs, this.limit, member));
    return wait < 0 ? null : wait;
  }
}

/** The same window in this process's memory: for a service built without Redis (unit tests, tools). */
export class MemoryTestSendLimit implements TestSendLimit {
  private readonly sent = new Map<string, number[]>();

  constructor(
    private readonly clock: Clock,
    private readonly limit = TEST_SENDS_PER_WINDOW,
    private readonly windowMs = TEST_SEND_WINDOW_MS,
  ) {}

  async take(author: string): Promise<number | null> {
    const now = this.clock.now();
    const key = author.trim().toLowerCase();
    const recent = (this.sent.get(key) ?? []).filter((t) => t > now - this.windowMs);
    if (recent.length >= this.limit) {
      this.sent.set(key, recent);
      return Math.max(1, recent[0]! + this.windowMs - now);
    }
    recent.push(now);
    this.sent.set(key, recent);
    return null;
  }
}
