/**
 * Seals the global audit stream with AUDIT_SECRET (audit/chain.ts, link 2), moments after each
 * entry is written. Every Airlock process (API or worker) runs one; they share the work through
 * a compare-and-set on the sealed head, so an entry is sealed once whichever process gets there.
 *
 * The sealer trusts nothing it did not check: before it extends the seals it verifies the newest
 * sealed entry against the secret. A head that does not verify (an edited entry, seals written
 * with another secret, a removed head with seals left behind) stops all sealing and is logged as
 * an error: the unsealed entries then age, and the verifier reports them. The seal head is logged
 * at most once a minute, so an operator who keeps the logs has anchors that a later rewrite of the
 * whole trail cannot match (`npm run audit:verify -- --anchor "<id> <seal>"`).
 */
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { keys } from "../store/keys.js";
import { entrySeal, flatFields } from "./chain.js";

/** Entries sealed per round trip: bounded memory and a short script whatever the backlog. */
const PAGE = 500;
/** How long a blocking read waits before the loop checks whether it should stop. */
const BLOCK_MS = 2000;
/** After a Redis error: wait before trying again, so a Redis that is down is not hammered. */
const RETRY_MS = 1000;
/** How long a stopping process tries to seal the last entries. */
const FINAL_SEAL_MS = 2000;
/** The seal head is logged at most this often (anchors for the verifier). */
const ANCHOR_LOG_MS = 60_000;

/**
 * KEYS: 1 seal head, 2 seals hash. ARGV: 1 the head the caller read ("" for none), 2 the new head,
 * 3.. entry id, seal pairs. Writes only if nobody sealed since the caller read the head.
 */
const SEAL_SCRIPT = `
local head = redis.call('GET', KEYS[1])
if (head or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], unpack(ARGV, 3))
redis.call('SET', KEYS[1], ARGV[2])
return 1
`;

export interface SealHead {
  id: string;
  seal: string;
}

export function parseSealHead(raw: string | null): SealHead | null {
  if (!raw) return null;
  const [id, seal] = raw.split(" ");
  return id && seal ? { id, seal } : null;
}

export class AuditSealer {
  private stopped = false;
  private running: Promise<void> | null = null;
  /** The head that failed verification (logged once per head), or null while sealing. */
  private refusal: { head: string | null } | null = null;
  private lastAnchorLog = 0;

  constructor(
    private readonly d: {
      redis: Redis;
      /** A connection of its own: the loop blocks on it waiting for new entries. */
      reader: Redis;
      secret: string;
      logger: Logger;
    },
  ) {}

  start(): void {
    this.running ??= this.loop();
  }

  /** Stops the loop, after sealing what the last moments wrote (sign-outs, the last transitions). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.d.reader.disconnect(); // ends a blocking read at once
    await this.running;
    this.running = null;
    // Bounded: a busy trail, or a Redis that does not answer (its commands wait for a reconnect), does not hold the stop.
    const finalSeal = (async () => {
      for (let round = 0; round < 20 && (await this.sealOnce().catch(() => 0)) > 0; round++);
    })();
    await Promise.race([finalSeal, new Promise((r) => setTimeout(r, FINAL_SEAL_MS).unref())]);
  }

  /** Seals what the stream holds now; answers how many entries were sealed (0: nothing to do, or refused). */
  async sealOnce(): Promise<number> {
    const { redis, secret } = this.d;
    const raw = await redis.get(keys.auditSealHead());
    const head = parseSealHead(raw);
    const page = await redis.xrange(keys.auditAll(), head ? `(${head.id}` : "-", "+", "COUNT", PAGE);
    if (page.length === 0) return 0;
    // Checked before every extension, not once: a forger may rewrite the head entry in place.
    const problem = await this.checkHead(raw);
    if (problem) {
      if (this.refusal?.head !== raw) this.d.logger.error({ auditSealHead: raw }, `audit sealing stopped: ${problem}. The trail may have been tampered with: run npm run audit:verify.`);
      this.refusal = { head: raw };
      return 0;
    }
    this.refusal = null;
    let prev = head?.seal ?? "";
    const pairs: string[] = [];
    for (const [id, flat] of page) {
      prev = entrySeal(secret, prev, id, flatFields(flat));
      pairs.push(id, prev);
    }
    const next = `${page[page.length - 1]![0]} ${prev}`;
    const won = await redis.eval(SEAL_SCRIPT, 2, keys.auditSealHead(), keys.auditSeals(), raw ?? "", next, ...pairs);
    if (won === 1) this.logAnchor(next);
    // Lost the race: another process sealed the same entries; the next round reads its head.
    return page.length;
  }

  /** Why the stored head cannot be extended, or null when it verifies. */
  private async checkHead(raw: string | null): Promise<string | null> {
    const { redis, secret } = this.d;
    const head = parseSealHead(raw);
    if (!head) {
      if (raw) return `the seal head "${raw.slice(0, 80)}" is malformed`;
      const sealed = await redis.hlen(keys.auditSeals());
      return sealed > 0 ? `the seal head is gone but ${sealed} seals remain` : null; // null: nothing sealed yet
    }
    const [entry, before] = await redis.xrevrange(keys.auditAll(), head.id, "-", "COUNT", 2);
    if (!entry || entry[0] !== head.id) return `the sealed head entry ${head.id} is not in the trail`;
    const prevSeal = before ? await redis.hget(keys.auditSeals(), before[0]) : "";
    if (prevSeal === null) return `the entry before the sealed head (${before![0]}) has no seal`;
    if (entrySeal(secret, prevSeal, head.id, flatFields(entry[1])) !== head.seal) return `the sealed head entry ${head.id} does not match its seal (edited, or sealed with another AUDIT_SECRET)`;
    return null;
  }

  private logAnchor(head: string): void {
    const now = Date.now();
    if (now - this.lastAnchorLog < ANCHOR_LOG_MS) return;
    this.lastAnchorLog = now;
    this.d.logger.info({ auditSealHead: head }, `audit trail sealed up to ${head}`);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      try {
        if ((await this.sealOnce()) > 0) continue;
        if (this.refusal) {
          // Refused: entries after the head stay unsealed, so a read from the head would return at
          // once and spin; look again in a while (an operator may have restored the trail).
          await new Promise((r) => setTimeout(r, BLOCK_MS).unref());
          continue;
        }
        const head = parseSealHead(await this.d.redis.get(keys.auditSealHead()));
        // Wakes as soon as an entry after the sealed head is written; returns empty after BLOCK_MS.
        await this.d.reader.xread("COUNT", 1, "BLOCK", BLOCK_MS, "STREAMS", keys.auditAll(), head?.id ?? "0-0");
      } catch (e) {
        if (this.stopped) break;
        this.d.logger.warn(`audit sealer: ${(e as Error).message}`);
        await new Promise((r) => setTimeout(r, RETRY_MS).unref());
      }
    }
  }
}
