/**
 * Fault injection with real processes: the API and the workers run as child processes against a
 * real redis-server (AOF, `appendfsync always`) and a real SMTP sink; the test kills them for real.
 *
 * - kill -9 the worker at seeded random moments of a 20,000-recipient fan-out, and of its
 *   correction fan-out (the first kill of each phase while the sink holds the reply to one of its
 *   DATA, so that at least one kill lands inside a transaction for certain): every recipient gets
 *   the original (and then the correction) at least once and at most twice, and, phase by phase,
 *   every address received twice is flagged by the API as a possible duplicate and was inside a
 *   transaction of a killed worker (claimed, not settled, in Redis right after the kill).
 * - kill -9 Redis during the hold and during a fan-out: the acknowledged approval and recall are
 *   still there, the message releases, the fan-out resumes, nobody is lost.
 * - a recall answered while the only worker is dead, while Redis restarts, and while a
 *   transaction waits for its retry after a 451: nobody is handed the original after the answer,
 *   and the correction goes to exactly those who got it (promises 3 and 4).
 * - SIGTERM a worker mid-fan-out: it exits within 10 s and nothing is lost.
 * - two worker processes with the default WORKER_LOCK_SECONDS: the send rate holds across both;
 *   one killed mid-fan-out has its batches taken over within 10 s; one stalled for 3 s keeps them.
 *
 * After every fault the audit trail verifies (audit/verify.ts, straight against the test's Redis).
 * The seed is printed; FAULT_SEED=<n> replays a schedule.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { verifyAudit } from "../../src/audit/verify.js";
import { BATCH_SIZE, QUEUES } from "../../src/queues/catalogue.js";
import { keys, QUEUE_PREFIX } from "../../src/store/keys.js";
import { headerOf, startSmtpSink, type Received, type SinkTransaction, type SmtpSink } from "../support/smtp-sink.js";
import { startTestRedis, type TestRedis } from "../support/redis.js";
import { api, pollUntil, seeded, spawnAirlock, uploadAudience, writeUsers, type AirlockProcess } from "../support/processes.js";

const SEED = Number(process.env.FAULT_SEED ?? Date.now() % 1_000_000);
const random = seeded(SEED);
const figures: string[] = [];

let redis: TestRedis;
let sink: SmtpSink;
let dir: string;
let env: Record<string, string>;
let apiProc: AirlockProcess;
let worker: AirlockProcess;
/** The test's own client to the test Redis: the audit verifier, and what a kill left in flight. */
let store: Redis;

/** The seals' key (AUDIT_SECRET), the same for every process, and the verifier's. */
const AUDIT_SECRET = "fault-audit-secret-0123456789abcdef0123456789";
/** Each test spawns and kills real processes: on a loaded 2-core machine that can take longer than the default minute. */
const TEST_TIMEOUT = 180_000;
const POOL = 5; // SMTP_POOL_SIZE below: one transaction in flight per pooled connection
const PER_TRANSACTION = 50; // RECIPIENTS_PER_TRANSACTION below

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const until = <T>(what: string, check: () => Promise<T | undefined | false>, deadlineMs = 90_000): Promise<T> => pollUntil(what, check, deadlineMs, `seed ${SEED}`);

const get = async (id: string) => (await api(apiProc.url, "ops", "GET", `/api/messages/${id}`)).body;

const audience = (name: string, size: number): Promise<void> => uploadAudience(apiProc.url, name, size);

async function approved(list: string, subject: string, extra: object = {}): Promise<{ id: string; messageId: string }> {
  const m = (await api(apiProc.url, "author", "POST", "/api/messages", { subject, text: "Fault test.", audience: { lists: [list] }, ...extra })).body;
  expect(m.id, JSON.stringify(m)).toBeDefined();
  expect((await api(apiProc.url, "approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  if (m.requiredApprovals > 1) expect((await api(apiProc.url, "approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  return { id: m.id, messageId: m.messageId };
}

type Kind = "original" | "correction";

/** How many times each address received the mail with this Message-ID (or, for corrections, in reply to it). */
function copies(messageId: string, correction = false): Map<string, number> {
  const n = new Map<string, number>();
  for (const r of sink.received) {
    const hit = correction ? r.mail.inReplyTo === messageId : r.mail.messageId === messageId;
    if (hit) for (const to of r.to) n.set(to, (n.get(to) ?? 0) + 1);
  }
  return n;
}

/** Whether a raw message is the original with this Message-ID, or its correction (threaded under it). */
const isKind = (raw: Buffer, kind: Kind, messageId: string) => headerOf(raw, kind === "original" ? "Message-ID" : "In-Reply-To") === messageId;

/**
 * The recipients the API flags as possible duplicates of one phase. The recipients endpoint has no
 * filter for them (`status` is queued|sent|failed|skipped): every page is read, each item carries
 * `possibleDuplicate` (the original) and `correctionPossibleDuplicate`. The count on the message is
 * the size of their union.
 */
async function flaggedFor(id: string, kind: Kind = "original"): Promise<Set<string>> {
  const s = await recipientStates(id);
  return kind === "original" ? s.flagged : s.flaggedCorrection;
}

/** The API's per-recipient states, every page: those flagged as possible duplicates, and those recorded sent. */
async function recipientStates(id: string): Promise<{ flagged: Set<string>; flaggedCorrection: Set<string>; sent: Set<string> }> {
  const flagged = new Set<string>();
  const flaggedCorrection = new Set<string>();
  const sent = new Set<string>();
  let cursor: string | null = "0";
  while (cursor !== null) {
    const r = await api(apiProc.url, "ops", "GET", `/api/messages/${id}/recipients?limit=1000&cursor=${cursor}`);
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    for (const item of r.body.items as Array<{ email: string; status: string; possibleDuplicate: boolean; correctionPossibleDuplicate: boolean }>) {
      if (item.possibleDuplicate) flagged.add(item.email);
      if (item.correctionPossibleDuplicate) flaggedCorrection.add(item.email);
      if (item.status === "sent") sent.add(item.email);
    }
    cursor = r.body.nextCursor;
  }
  // A count of recipients (the spec's possibleDuplicates): one flagged in both phases counts once.
  expect(new Set([...flagged, ...flaggedCorrection]).size, `message ${id}: possibleDuplicates counts the recipients flagged in either phase (seed ${SEED})`).toBe((await get(id)).possibleDuplicates);
  return { flagged, flaggedCorrection, sent };
}

/**
 * The recipients whose delivery state is `i` in Redis now (claimed for an SMTP transaction, not
 * settled: store/lua/fanout-prologue.lua). Read right after a worker's death, before anyone takes
 * its batches over, these are its in-flight transactions (plus, with two workers, the other's,
 * which settle normally). Commands of the dead worker that Redis still runs after this read can
 * only settle some (fewer in flight) or claim some it never sent: nobody outside this set can
 * have been handed to SMTP by it without a settle.
 */
async function inFlight(id: string, kind: Kind): Promise<Set<string>> {
  const [states, members] = await Promise.all([store.getBuffer(kind === "original" ? keys.delivery(id) : keys.correction(id)), store.zrange(keys.recipients(id), "0", "-1")]);
  const out = new Set<string>();
  if (states) for (let i = 0; i < states.length; i++) if (states[i] === 0x69 /* "i" */) out.add(members[i]!);
  return out;
}

/**
 * Holds the sink's reply to the next DATA of this message's `kind` (from the client whose EHLO
 * name is `ehlo`, when given) and answers once one is held: its body has arrived, its client waits
 * for the reply. `release()` lets the sink answer 250: it was delivered, whatever became of the
 * client meanwhile. A kill while one is held lands inside a transaction for certain.
 */
async function holdNextData(messageId: string, kind: Kind, ehlo?: string): Promise<{ to: string[]; release(): void }> {
  let held: { to: string[]; release(): void } | undefined;
  sink.behaviour = {
    data: (to, raw, client) => {
      if (held || !isKind(raw, kind, messageId) || (ehlo !== undefined && client?.ehlo !== ehlo)) return null;
      return new Promise<null>((resolve) => {
        held = { to, release: () => resolve(null) };
      });
    },
  };
  try {
    return await until("a transaction held in DATA", async () => held, 30_000);
  } finally {
    sink.behaviour = {};
  }
}

/** The transactions a kill at `killedAt` cut (open when their connection went away, within 2 s). */
function cutBy(killedAt: number, ehlo?: string): SinkTransaction[] {
  return sink.cut().filter((t) => t.cutAt! >= killedAt && t.cutAt! <= killedAt + 2000 && (ehlo === undefined || t.ehlo === ehlo));
}

/**
 * Every expected recipient reached; every address received more than once is flagged by the API as
 * a possible duplicate (`flagged`: sets, not counts, so a double other than the ones counted
 * fails). Without `inFlightAtKills` nobody gets it more than twice. With it (address -> how many
 * kills found it inside a transaction of the dead worker, or how many of its transactions the sink
 * cut after the body), nobody gets it more than once plus that
 * number: promise 5's "except a message that was inside an SMTP transaction at the crash", per
 * crash (a recipient retried after one kill can be inside the retry at the next).
 */
function checkDelivery(what: string, counts: Map<string, number>, expected: number, flagged: Set<string>, inFlightAtKills?: Map<string, number>): { twice: string[]; thrice: number } {
  expect(counts.size, `${what}: recipients reached (seed ${SEED})`).toBe(expected);
  const more = [...counts].filter(([, n]) => n > 1);
  expect(more.filter(([a]) => !flagged.has(a)), `${what}: received more than once but not flagged as a possible duplicate (seed ${SEED})`).toEqual([]);
  if (inFlightAtKills) {
    const beyond = more.filter(([a, n]) => n > 1 + (inFlightAtKills.get(a) ?? 0));
    expect(beyond, `${what}: received more often than once plus the cut transactions it was in (seed ${SEED})`).toEqual([]);
  } else {
    expect(Math.max(...counts.values()), `${what}: at most twice (seed ${SEED})`).toBeLessThanOrEqual(2);
  }
  return { twice: more.map(([a]) => a), thrice: more.filter(([, n]) => n > 2).length };
}

/** The audit trail verifies (audit/verify.ts's exported verifier, against the test's Redis). */
async function auditIntact(after: string): Promise<void> {
  let problems: unknown[] = [];
  const deadline = Date.now() + 15_000;
  for (;;) {
    try {
      const report = await verifyAudit(store, { secret: AUDIT_SECRET });
      if (report.ok) return;
      problems = report.problems;
    } catch (e) {
      problems = [(e as Error).message]; // Redis may still be coming back
    }
    if (Date.now() > deadline) break;
    await sleep(250); // entries may be sealed moments after they are written (audit/sealer.ts): poll
  }
  expect(problems, `the audit trail after ${after} (seed ${SEED})`).toEqual([]);
}

/** POST a recall; the time its answer arrived. */
async function recall(id: string, reason: string): Promise<{ status: number; body: any; answeredAt: number }> {
  const r = await api(apiProc.url, "ops", "POST", `/api/messages/${id}/recall`, { reason });
  return { ...r, answeredAt: Date.now() };
}

/**
 * Promises 3 and 4 after a recall of an N-recipient message answered at `answeredAt`.
 *
 * Promise 3 by the record: a recipient is handed to SMTP only through a claim, and every claim
 * checks the state in Redis atomically with the recall (store/lua/claim.lua, recall.lua). One
 * claimed after the recall would be recorded sent beyond what the recall counted as delivered
 * (sent + in flight at that instant), or skipped twice. So: whoever the sink gave the original to
 * is recorded sent, no more are recorded sent than the recall counted, and sent + failed + skipped
 * is N. Promise 3 by the clock, with `quietAtAnswer` (nothing of the original could be in flight
 * at the answer: no worker was alive): no transaction of the original began at the sink after the
 * answer, and no copy arrived after it. Otherwise a transaction claimed just before the recall can
 * reach the sink after the answer (it was in an SMTP transaction at that moment: it counts as
 * delivered and gets the correction); those are counted in `late`.
 *
 * Promise 4: each recipient of the original gets the correction exactly once; anyone else corrected
 * is one the recall counted as delivered because its transaction was cut at an unknown point
 * (flagged, and, when given, in flight at the fault). Answers the message once corrected.
 */
async function checkRecall(what: string, m: { id: string; messageId: string }, n: number, answeredAt: number, opts: { quietAtAnswer: boolean; inFlightAtFault?: Set<string> }) {
  const done = await until(`${what}: corrected`, async () => {
    const s = await get(m.id);
    return s.state === "corrected" ? s : undefined;
  });
  const originals = copies(m.messageId);
  const corrections = copies(m.messageId, true);
  const { flagged, sent } = await recipientStates(m.id);
  expect([...originals.keys()].filter((a) => !sent.has(a)), `${what}: received the original without being recorded sent (seed ${SEED})`).toEqual([]);
  expect(done.counts.sent, `${what}: recorded sent beyond what the recall counted (seed ${SEED})`).toBeLessThanOrEqual(done.recall.deliveredAtRecall);
  expect(done.counts.sent + done.counts.failed + done.counts.skipped, `${what}: every recipient once in the counts (seed ${SEED})`).toBe(n);
  // Handed after the answer: a transaction begun after it. Received after it: its whole body arrived after it
  // (the sink parses and records a copy a moment later, which may be after the answer even when the body was not).
  const late = sink.transactions.filter((t) => t.messageId === m.messageId && t.startedAt > answeredAt);
  const arrivedAfter = sink.transactions.filter((t) => t.messageId === m.messageId && t.outcome === "delivered" && t.bodyAt! > answeredAt);
  if (opts.quietAtAnswer) {
    expect(late.flatMap((t) => t.to), `${what}: handed the original after the recall's answer (seed ${SEED})`).toEqual([]);
    expect(arrivedAfter.flatMap((t) => t.to), `${what}: received the original after the recall's answer (seed ${SEED})`).toEqual([]);
  }
  expect([...originals.keys()].filter((a) => corrections.get(a) !== 1), `${what}: got the original but not the correction exactly once (seed ${SEED})`).toEqual([]);
  expect(Math.max(0, ...corrections.values()), `${what}: corrected once (seed ${SEED})`).toBeLessThanOrEqual(1);
  const extra = [...corrections.keys()].filter((a) => !originals.has(a));
  expect(extra.filter((a) => !flagged.has(a)), `${what}: corrected without having got the original, and not flagged (seed ${SEED})`).toEqual([]);
  if (opts.inFlightAtFault) expect(extra.filter((a) => !opts.inFlightAtFault!.has(a)), `${what}: corrected without having got the original, not in flight at the fault (seed ${SEED})`).toEqual([]);
  expect(done.counts.corrected).toBe(corrections.size);
  return { done, originals: originals.size, corrections: corrections.size, extra: extra.length, late: late.length, arrivedAfter: arrivedAfter.length };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "airlock-faults-"));
  [redis, sink] = await Promise.all([startTestRedis({ appendfsync: "always" }), startSmtpSink()]);
  store = new Redis(redis.url);
  store.on("error", () => {}); // Redis is killed on purpose; the client reconnects by itself
  env = {
    REDIS_URL: redis.url,
    SMTP_URL: sink.url,
    USERS_FILE: writeUsers(dir),
    LINK_SECRET: "fault-link-secret-0123456789abcdef0123456789",
    AUDIT_SECRET,
    // The same in every process: a staged send's early mail carries a link built from it, and a
    // worker building other bytes than the API approved halts the send (docs/operations.md).
    PUBLIC_URL: "http://airlock.test",
    HOLD_MIN_SECONDS: "1",
    // Large audiences go all at once here (staged sends have their own tests and bench phase).
    WAVES_THRESHOLD: "0",
    // ~5 s for 20,000: long enough to crash it several times.
    SEND_RATE_PER_SECOND: "4000",
    RECIPIENTS_PER_TRANSACTION: String(PER_TRANSACTION),
    SMTP_POOL_SIZE: String(POOL),
    // A crashed worker's jobs are taken over after 2 s instead of 6 (the defaults are tested on their own, below).
    WORKER_LOCK_SECONDS: "2",
    API_RATE_LIMIT_PER_MINUTE: "1000000",
    LINK_RATE_LIMIT_PER_MINUTE: "1000000",
  };
  [apiProc, worker] = await Promise.all([spawnAirlock("api", env), spawnAirlock("worker", env)]);
  process.stdout.write(`fault injection: seed ${SEED}\n`);
}, 120_000);

afterAll(async () => {
  process.stdout.write(`fault injection figures (seed ${SEED}):\n${figures.map((f) => `  ${f}`).join("\n")}\n`);
  await Promise.all([apiProc?.kill9(), worker?.kill9()]);
  store?.disconnect();
  await sink?.close();
  await redis?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a worker killed with SIGKILL", () => {
  it("delivers the original and the correction to everyone; more than once only if flagged and in flight at a kill", async () => {
    const N = 20_000;
    await audience("everyone", N);
    const m = await approved("everyone", "Crash me");
    await until("sending", async () => (await get(m.id)).state === "sending");

    const kills: Record<Kind, number[]> = { original: [], correction: [] };
    const inFlightAtKills: Record<Kind, Map<string, number>> = { original: new Map(), correction: new Map() };
    const held: Record<Kind, string[]> = { original: [], correction: [] };
    const crash = async (kind: Kind, done: () => Promise<boolean>, times: number) => {
      for (let i = 0; i < times && !(await done()); i++) {
        await sleep(200 + random() * 900); // the kill's moment: seeded, deliberately random
        // The first kill of a phase waits for the worker to be inside a transaction (its body arrived, its reply held).
        const hold = i === 0 ? await holdNextData(m.messageId, kind) : undefined;
        kills[kind].push(Date.now());
        await worker.kill9();
        hold?.release();
        if (hold) held[kind].push(...hold.to);
        for (const a of await inFlight(m.id, kind)) inFlightAtKills[kind].set(a, (inFlightAtKills[kind].get(a) ?? 0) + 1);
        worker = await spawnAirlock("worker", env);
      }
    };
    const phase = async (kind: Kind, n: number) => {
      // At least one kill landed inside a transaction, as the sink saw it: a transaction open when the connection went away.
      const inside = kills[kind].filter((at) => cutBy(at).length > 0).length;
      expect(inside, `${kind}: kills inside a transaction (seed ${SEED})`).toBeGreaterThanOrEqual(1);
      // Bounded by what the dead workers had in flight: at most one transaction per pooled connection per kill
      // (a snapshot also holds the leftovers of an earlier kill not yet taken over: they are counted once here).
      expect(inFlightAtKills[kind].size).toBeLessThanOrEqual(kills[kind].length * POOL * PER_TRANSACTION);
      const flagged = await flaggedFor(m.id, kind);
      const r = checkDelivery(kind, copies(m.messageId, kind === "correction"), n, flagged, inFlightAtKills[kind]);
      // Not vacuous: the held transaction's recipients had the body when their worker died unsettled, and got it again.
      expect(held[kind].filter((a) => !r.twice.includes(a)), `${kind}: held in DATA at a kill, yet received once (seed ${SEED})`).toEqual([]);
      return { ...r, inside, flagged: flagged.size, inFlight: inFlightAtKills[kind].size };
    };

    await crash("original", async () => (await get(m.id)).state !== "sending", 3);
    const sent = await until("sent", async () => {
      const s = await get(m.id);
      return s.state === "sent" ? s : undefined;
    });
    expect(sent.counts.sent + sent.counts.failed).toBe(N);
    const originals = await phase("original", N);

    expect((await recall(m.id, "fault test")).status).toBe(200);
    await crash("correction", async () => (await get(m.id)).state !== "correcting", 2);
    const corrected = await until("corrected", async () => {
      const s = await get(m.id);
      return s.state === "corrected" ? s : undefined;
    });
    expect(corrected.counts.corrected).toBe(N);
    const corrections = await phase("correction", N);
    figures.push(
      `worker kill -9 (single worker, WORKER_LOCK_SECONDS=2): ${kills.original.length} + ${kills.correction.length} kills, ${originals.inside} + ${corrections.inside} inside a transaction (sink); ` +
        `${N} recipients checked per phase; delivered more than once: ${originals.twice.length} original (${originals.thrice} thrice), ${corrections.twice.length} correction (${corrections.thrice} thrice); ` +
        `all flagged (${originals.flagged} flagged after the original, ${corrections.flagged} after both) and in flight at a kill (${originals.inFlight} + ${corrections.inFlight} in flight at kills)`,
    );
    await auditIntact("worker kills");
  }, TEST_TIMEOUT);
});

describe("a worker killed with SIGKILL in a staged send's canary (promises 5 and 9)", () => {
  it("the canary reaches each of its recipients (twice only if flagged and in the transaction cut), nothing of the rest before the continue, then everyone", async () => {
    const N = 2_000;
    await audience("staged-crash", N);
    const m = await approved("staged-crash", "Crash the canary", { waves: true });
    // The first early transaction is held in DATA, and its worker dies with it.
    const hold = await holdNextData(m.messageId, "original");
    const killedAt = Date.now();
    await worker.kill9();
    hold.release();
    worker = await spawnAirlock("worker", env);
    const waiting = await until("the wait after the canary", async () => {
      const cur = await get(m.id);
      return cur.waves?.phase === "wait" ? cur : undefined;
    });
    const early = waiting.waves.seed + waiting.waves.canary;
    expect(early).toBeGreaterThanOrEqual(50);
    const flagged = await flaggedFor(m.id);
    // Nothing of the rest: exactly the early waves, each once unless cut inside a transaction and flagged.
    const canary = checkDelivery("staged canary", copies(m.messageId), early, flagged);
    expect(cutBy(killedAt).length, `the kill cut the held transaction (seed ${SEED})`).toBeGreaterThanOrEqual(1);
    expect((await api(apiProc.url, "ops", "POST", `/api/messages/${m.id}/continue`, { from: "wait" })).status).toBe(200);
    const sent = await until("sent", async () => {
      const cur = await get(m.id);
      return cur.state === "sent" ? cur : undefined;
    });
    expect(sent.counts.sent + sent.counts.failed).toBe(N);
    const all = checkDelivery("staged, all waves", copies(m.messageId), N, await flaggedFor(m.id));
    figures.push(`staged send, worker kill -9 in the canary: ${early} early recipients, ${canary.twice.length} twice (flagged), then ${N} reached, ${all.twice.length} twice in all`);
    await auditIntact("a kill in the canary");
  }, TEST_TIMEOUT);
});

describe("Redis killed with SIGKILL (AOF, appendfsync always)", () => {
  it("keeps an acknowledged approval and recall across a crash during the hold, and still releases on time", async () => {
    await audience("small", 500);
    const held = await approved("small", "Held across a Redis crash", { holdMinutes: 0.1 }); // a 6 s hold
    const recalled = await approved("small", "Recalled before a Redis crash", { holdMinutes: 10 });
    expect((await recall(recalled.id, "before the crash")).status).toBe(200);
    const before = await get(held.id);
    expect(before.state).toBe("scheduled");

    await redis.kill();
    await redis.restart();

    const after = await until("API answering again", async () => {
      const r = await api(apiProc.url, "ops", "GET", `/api/messages/${held.id}`);
      return r.status === 200 ? r.body : undefined;
    });
    expect(after.approvals).toEqual(before.approvals);
    expect(after.releaseAt).toBe(before.releaseAt);
    expect((await get(recalled.id)).state).toBe("recalled");
    const sent = await until("released and sent", async () => {
      const s = await get(held.id);
      return s.state === "sent" ? s : undefined;
    });
    // Released, and not before its hold ended: neither the release time nor the first delivery.
    expect(Date.parse(sent.releaseAt)).toBeGreaterThanOrEqual(Date.parse(before.releaseAt));
    const firstDelivery = Math.min(...sink.received.filter((r) => r.mail.messageId === held.messageId).map((r) => r.at));
    expect(firstDelivery).toBeGreaterThanOrEqual(Date.parse(before.releaseAt));
    checkDelivery("held", copies(held.messageId), 500, await flaggedFor(held.id));
    expect(copies(recalled.messageId).size).toBe(0);
    figures.push(`redis kill -9 during the hold: approval and recall kept, released at its time, 500 recipients checked`);
    await auditIntact("a Redis crash during the hold");
  }, TEST_TIMEOUT);

  it("resumes a fan-out cut by a Redis crash, losing nobody", async () => {
    const N = 10_000;
    await audience("mid", N);
    const m = await approved("mid", "Fan-out across a Redis crash");
    await until("some sent", async () => (await get(m.id)).counts.sent > 1000);
    await redis.kill();
    await sleep(300); // Redis is down for a moment (deliberate): workers and API see connection errors
    await redis.restart();
    const sent = await until("sent", async () => {
      const s = await get(m.id);
      return s.state === "sent" ? s : undefined;
    }, 120_000);
    expect(sent.counts.sent + sent.counts.failed).toBe(N);
    const r = checkDelivery("across the crash", copies(m.messageId), N, await flaggedFor(m.id));
    figures.push(`redis kill -9 mid-fan-out: ${N} recipients checked, delivered twice ${r.twice.length} (all flagged), possibleDuplicates ${sent.possibleDuplicates}`);
    await auditIntact("a Redis crash mid-fan-out");
  }, TEST_TIMEOUT);
});

describe("the API killed with SIGKILL while answering a recall", () => {
  it("leaves the recall fully in effect or not at all; the client's retry makes one recall and one correction", async () => {
    const N = 2_000;
    await audience("apikill", N);
    const m = await approved("apikill", "Recall while the API dies");
    await until("sent", async () => (await get(m.id)).state === "sent");
    // Fire the recall and kill the API a random few milliseconds into it, answer or not.
    const first = fetch(`${apiProc.url}/api/messages/${m.id}/recall`, {
      method: "POST",
      headers: { authorization: "Bearer test-token-ops-0123456789abcdef", "content-type": "application/json" },
      body: JSON.stringify({ reason: "first try" }),
    }).then((r) => r.status, () => "connection lost" as const);
    await sleep(random() * 6); // a recall is answered in a few ms: kill inside that window, or just before or after
    await apiProc.kill9();
    const firstOutcome = await first;
    apiProc = await spawnAirlock("api", env);
    // The client did not (necessarily) get an answer: it retries. 200 = this retry recalled; 409 = the first one had.
    const retry = await recall(m.id, "retry");
    expect([200, 409]).toContain(retry.status);
    const done = await until("corrected", async () => {
      const s = await get(m.id);
      return s.state === "corrected" ? s : undefined;
    });
    const events = (await api(apiProc.url, "ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string }>;
    expect(events.filter((e) => e.action === "recall")).toHaveLength(1);
    expect(done.counts.corrected).toBe(N);
    const r = checkDelivery("correction after an API crash", copies(m.messageId, true), N, await flaggedFor(m.id, "correction"));
    expect(r.twice).toEqual([]);
    figures.push(`API kill -9 during a recall: first request ${String(firstOutcome)}, retry ${retry.status}; one recall in the audit, ${N} corrections, none twice`);
    await auditIntact("an API crash during a recall");
  }, TEST_TIMEOUT);
});

describe("a recall while something is down (promise 3)", () => {
  it("while the only worker is dead: answered, and after the worker's restart nobody gets the original", async () => {
    const N = 10_000;
    await audience("deadworker", N);
    const m = await approved("deadworker", "Recall while the worker is dead");
    await until("some sent", async () => (await get(m.id)).counts.sent > 1000);
    // Killed inside a transaction (its body arrived, the reply held): a transaction in flight at the recall.
    const hold = await holdNextData(m.messageId, "original");
    const killedAt = Date.now();
    await worker.kill9();
    hold.release();
    const inFlightAtKill = await inFlight(m.id, "original");
    expect(hold.to.filter((a) => !inFlightAtKill.has(a))).toEqual([]);
    const r = await recall(m.id, "recalled while no worker runs");
    expect(r.status, JSON.stringify(r.body)).toBe(200);
    worker = await spawnAirlock("worker", env);
    const c = await checkRecall("recall with the worker dead", m, N, r.answeredAt, { quietAtAnswer: true, inFlightAtFault: inFlightAtKill });
    // The held transaction counted as delivered at the recall (its recipients have the original) and got the correction.
    const corrected = copies(m.messageId, true);
    expect(hold.to.filter((a) => corrected.get(a) !== 1)).toEqual([]);
    figures.push(
      `recall while the only worker is dead: answered 200 in the dead time (kill ${r.answeredAt - killedAt} ms before the answer), delivered at recall ${r.body.delivered} ` +
        `(${inFlightAtKill.size} of them in flight at the kill); ${c.originals} got the original, none after the answer; ${c.corrections} corrected once each (${c.extra} without the original: in flight at the kill, flagged)`,
    );
    await auditIntact("a recall with the worker dead");
  }, TEST_TIMEOUT);

  it("while Redis restarts: the recall, retried until it is answered, stops the fan-out", async () => {
    const N = 10_000;
    await audience("redisrecall", N);
    const m = await approved("redisrecall", "Recall while Redis restarts");
    await until("some sent", async () => (await get(m.id)).counts.sent > 1000);
    await redis.kill();
    const restarted = redis.restart();
    // The client sends the recall while Redis is down and retries until the answer tells: 200 (recalled by this
    // request) or 409 (an earlier attempt had recalled it, its answer lost); anything else (503, a lost connection) is retried.
    const statuses: Array<number | string> = [];
    let answer: Awaited<ReturnType<typeof recall>> | undefined;
    const deadline = Date.now() + 60_000;
    while (!answer) {
      const r = await recall(m.id, "recalled while Redis restarts").catch((e: Error) => ({ status: e.message, body: null, answeredAt: Date.now() }));
      statuses.push(r.status);
      if (r.status === 200 || r.status === 409) answer = r as Awaited<ReturnType<typeof recall>>;
      else if (Date.now() > deadline) throw new Error(`recall never answered: ${statuses.join(", ")} (seed ${SEED})`);
      else await sleep(100); // the client's retry interval
    }
    await restarted;
    const events = (await api(apiProc.url, "ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string }>;
    expect(events.filter((e) => e.action === "recall")).toHaveLength(1);
    // The worker runs on: a transaction it claimed just before the recall may reach the sink after the answer.
    const c = await checkRecall("recall across a Redis restart", m, N, answer.answeredAt, { quietAtAnswer: false });
    figures.push(
      `recall while Redis restarts: answers ${statuses.join(", ")}; delivered at recall ${c.done.recall.deliveredAtRecall}, recorded sent ${c.done.counts.sent}; ${c.originals} got the original ` +
        `(${c.late} transaction(s) begun after the answer, claimed before it); ${c.corrections} corrected once each (${c.extra} flagged in-flight leftovers)`,
    );
    await auditIntact("a recall across a Redis restart");
  }, TEST_TIMEOUT);

  it("while a transaction waits for its retry after a 451: the retry hands nobody the original", async () => {
    const N = 1_000; // one batch job: one transaction at a time
    const subject = "Recall during a 4xx retry";
    let accepted = 0;
    let refused = 0;
    let refusing = true;
    // Four transactions of the original go through (200 recipients); from then on the server answers 451 until told otherwise.
    sink.behaviour = {
      data: (_to, raw) => {
        if (headerOf(raw, "Subject") !== subject) return null;
        if (accepted < 4) {
          accepted++;
          return null;
        }
        if (!refusing) return null;
        refused++;
        return { code: 451, message: "4.3.0 try again later" };
      },
    };
    try {
      await audience("retry451", N);
      const m = await approved("retry451", subject);
      // The audit's smtpRetry entry is written once the refused transaction is settled, just before its job is retried with backoff.
      await until("a transaction retried after a 451", async () => {
        const events = (await api(apiProc.url, "ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string }>;
        return events.some((e) => e.action === "smtpRetry");
      });
      const r = await recall(m.id, "recalled during a retry");
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      const refusedAtRecall = refused;
      expect(refusedAtRecall).toBeGreaterThan(0);
      // The server recovers once nothing claimed before the recall is still in flight (a retry that raced the recall
      // is refused like the others): from then on whatever the fan-out hands it is delivered, and would be a claim
      // made after the recall.
      await until("nothing of the original in flight", async () => (await get(m.id)).counts.inFlight === 0);
      refusing = false;
      const recoveredAt = Date.now();
      // The batch's retry comes (after its backoff), finds the message recalled, and ends.
      const job = `${QUEUE_PREFIX}:${QUEUES.fanout}:original-${m.id}-0`;
      await until("the retried batch job finished", async () => (await store.hget(job, "finishedOn")) !== null);
      const attempts = Number(await store.hget(job, "atm"));
      const c = await checkRecall("recall during a 4xx retry", m, N, r.answeredAt, { quietAtAnswer: false });
      const after = (t: SinkTransaction) => t.messageId === m.messageId && (t.startedAt > recoveredAt || (t.outcome === "delivered" && t.bodyAt! > r.answeredAt));
      expect(sink.transactions.filter(after).flatMap((t) => t.to), `handed or delivered the original after the recall (seed ${SEED})`).toEqual([]);
      // Exactly: the 200 who got it are corrected, the rest (the refused transaction's included) were skipped.
      expect(c.originals).toBe(4 * PER_TRANSACTION);
      expect(c.extra).toBe(0);
      expect(c.done.counts).toMatchObject({ sent: 4 * PER_TRANSACTION, skipped: N - 4 * PER_TRANSACTION, corrected: 4 * PER_TRANSACTION });
      figures.push(
        `recall during a 451 retry: ${refusedAtRecall} transaction(s) refused before the answer, ${refused - refusedAtRecall} after (claimed before it); the batch job ended after ${attempts} attempts; ` +
          `${c.originals} got the original, none after the answer; ${c.corrections} corrected, exactly them; ${c.done.counts.skipped} skipped`,
      );
      await auditIntact("a recall during a 4xx retry");
    } finally {
      sink.behaviour = {};
    }
  }, TEST_TIMEOUT);
});

describe("an SMTP server in trouble", () => {
  it("retries 421/451 with backoff (on the audit) until it recovers, fails 550s with their reply, counts drops after DATA", async () => {
    const N = 1_000;
    await audience("smtp", N);
    const bad = new Set(Array.from({ length: 10 }, (_, i) => `smtp-${String(i * 97).padStart(5, "0")}@corp.example`));
    let rcptRefusals = 0;
    let drops = 0;
    const droppedOnce = new Set<string>(); // three different transactions are cut: a recipient is cut at most once
    const troubleUntil = Date.now() + 60_000; // replaced below once the message is sending
    let windowEnd = troubleUntil;
    sink.behaviour = {
      rcpt: (addr) => (bad.has(addr) ? (rcptRefusals++, { code: 550, message: "5.1.1 no such user" }) : null),
      data: (to) => {
        if (!to.some((t) => t.startsWith("smtp-"))) return null;
        if (Date.now() < windowEnd) return Math.random() < 0.5 ? { code: 421, message: "4.3.2 service shutting down" } : { code: 451, message: "4.3.0 try again later" };
        if (drops >= 3 || to.some((t) => droppedOnce.has(t))) return null;
        drops++;
        for (const t of to) droppedOnce.add(t);
        return "drop";
      },
    };
    try {
      const m = await approved("smtp", "SMTP trouble");
      windowEnd = Date.now() + 2_500; // ~2.5 s of 4xx from release on, then the server recovers
      const sent = await until("sent", async () => {
        const s = await get(m.id);
        return s.state === "sent" ? s : undefined;
      }, 120_000);
      expect(sent.counts).toMatchObject({ sent: N - bad.size, failed: bad.size });
      const failed = (await api(apiProc.url, "ops", "GET", `/api/messages/${m.id}/recipients?status=failed&limit=100`)).body.items as Array<{ email: string; reply: string }>;
      expect(new Set(failed.map((f) => f.email))).toEqual(bad);
      for (const f of failed) expect(f.reply).toContain("550");
      // Each bad address was refused in the transactions that carried it before it was recorded failed, never after.
      const received = copies(m.messageId);
      for (const b of bad) expect(received.has(b)).toBe(false);
      // The doubles are the dropped transactions' recipients, each flagged.
      const dropped = new Map(sink.transactions.filter((t) => t.outcome === "dropped").flatMap((t) => t.to.map((a) => [a, 1] as const)));
      const r = checkDelivery("through SMTP trouble", received, N - bad.size, await flaggedFor(m.id), dropped);
      expect(drops).toBe(3);
      expect(sent.possibleDuplicates).toBeGreaterThan(0); // the dropped transactions' recipients
      const events = (await api(apiProc.url, "ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string; at: string; detail: string }>;
      const retries = events.filter((e) => e.action === "smtpRetry");
      expect(retries.length).toBeGreaterThan(0);
      expect(retries.some((e) => /4[25]1/.test(e.detail))).toBe(true);
      expect(retries.some((e) => JSON.parse(e.detail).ambiguous === true)).toBe(true);
      figures.push(
        `SMTP 421/451 for 2.5 s then 3 drops after DATA, 10 × 550: ${retries.length} retried transactions on the audit, ${N - bad.size} delivered (${r.twice.length} twice, all flagged and in a dropped transaction; ${sent.possibleDuplicates} counted), ${bad.size} failed with the reply after ${rcptRefusals} refusals`,
      );
      await auditIntact("SMTP trouble");
    } finally {
      sink.behaviour = {};
    }
  }, TEST_TIMEOUT);
});

describe("a worker stopped with SIGTERM", () => {
  it("exits within 10 s mid-fan-out and loses nothing", async () => {
    const N = 10_000;
    await audience("term", N);
    const m = await approved("term", "Graceful stop");
    await until("some sent", async () => (await get(m.id)).counts.sent > 500);
    const ms = await worker.terminate();
    expect(ms).toBeLessThan(10_000);
    worker = await spawnAirlock("worker", env);
    const sent = await until("sent", async () => {
      const s = await get(m.id);
      return s.state === "sent" ? s : undefined;
    });
    expect(sent.counts.sent + sent.counts.failed).toBe(N);
    const r = checkDelivery("after SIGTERM", copies(m.messageId), N, await flaggedFor(m.id));
    expect(r.twice).toEqual([]); // a graceful stop finishes or hands back its transactions: no doubt, no double
    figures.push(`worker SIGTERM mid-fan-out: exited in ${ms} ms, ${N} recipients checked, none twice`);
    await auditIntact("a SIGTERM");
  }, TEST_TIMEOUT);
});

describe("two worker processes with the default WORKER_LOCK_SECONDS", () => {
  const RATE = 400;
  const NAMES = ["worker-a.airlock.test", "worker-b.airlock.test"] as const;
  const pair: AirlockProcess[] = [];
  /**
   * The defaults: no WORKER_LOCK_SECONDS (6 s: run-workers.ts lockTiming), a modest rate, and an
   * EHLO name each (SMTP_EHLO_NAME) so that the sink tells their connections apart.
   */
  const pairEnv = (i: number): Record<string, string> => ({
    ...Object.fromEntries(Object.entries(env).filter(([k]) => k !== "WORKER_LOCK_SECONDS")),
    SEND_RATE_PER_SECOND: String(RATE),
    SMTP_EHLO_NAME: NAMES[i]!,
  });
  const indexOf = (address: string) => Number(/-(\d{5})@/.exec(address)![1]);
  const batchOf = (address: string) => Math.floor(indexOf(address) / BATCH_SIZE);
  const ehloOf = (r: Received) => (r.connection === undefined ? undefined : sink.connections.get(r.connection)?.ehlo);
  const deliveries = (messageId: string) => sink.received.filter((r) => r.mail.messageId === messageId);
  /** The batches (BATCH_SIZE index ranges) a worker's connections delivered this message to: only a batch's holder sends it. */
  const batchesBy = (messageId: string, ehlo: string) => new Set(deliveries(messageId).filter((r) => ehloOf(r) === ehlo).flatMap((r) => r.to.map(batchOf)));
  const bothSending = (messageId: string, atLeast: number) =>
    until("both workers sending", async () => {
      const d = deliveries(messageId);
      const by = new Set(d.map(ehloOf));
      return d.reduce((n, r) => n + r.to.length, 0) >= atLeast && NAMES.every((n) => by.has(n));
    });
  /** BullMQ's view: the message's active fan-out jobs by the worker whose lock each carries (`<worker id>:<n>`), as batch numbers. */
  async function lockHolders(id: string): Promise<number[][]> {
    const q = `${QUEUE_PREFIX}:${QUEUES.fanout}`;
    const byWorker = new Map<string, number[]>();
    for (const job of await store.lrange(`${q}:active`, 0, -1)) {
      const [lock, data] = await Promise.all([store.get(`${q}:${job}:lock`), store.hget(`${q}:${job}`, "data")]);
      if (!lock || !data || JSON.parse(data).id !== id) continue;
      const w = lock.split(":")[0]!;
      byWorker.set(w, [...(byWorker.get(w) ?? []), Math.floor(JSON.parse(data).first / BATCH_SIZE)]);
    }
    return [...byWorker.values()].map((b) => b.sort((x, y) => x - y));
  }

  beforeAll(async () => {
    await worker.terminate(); // only these two take fan-out jobs here
    pair.push(...(await Promise.all([0, 1].map((i) => spawnAirlock("worker", pairEnv(i))))));
  }, 120_000);

  afterAll(async () => {
    await Promise.all(pair.map((w) => w.kill9())); // SIGKILL ends a stopped process too
  });

  it("holds SEND_RATE_PER_SECOND across both: no window of the steady state carries more than its length's worth plus a documented allowance", async () => {
    const N = 6_000; // 6 batches: more than one worker's 5 slots, so both hold some
    await audience("rate", N);
    const m = await approved("rate", "Rate limit across two workers");
    const sent = await until("sent", async () => {
      const s = await get(m.id);
      return s.state === "sent" ? s : undefined;
    });
    expect(sent.counts.sent).toBe(N);
    checkDelivery("rate", copies(m.messageId), N, await flaggedFor(m.id));
    expect(new Set(deliveries(m.messageId).map(ehloOf)), "both workers sent").toEqual(new Set(NAMES));
    // Each delivery at the moment its transaction began at the sink (MAIL FROM: right after its claim).
    const d = deliveries(m.messageId)
      .map((r) => ({ at: r.startedAt ?? r.at, n: r.to.length }))
      .sort((a, b) => a.at - b.at);
    const first = d[0]!.at;
    const last = d[d.length - 1]!.at;
    // The token bucket (store/lua/claim.lua, shared by all workers in Redis) holds at most one second's worth
    // (SEND_RATE_PER_SECOND) and starts full after a quiet spell, so the first second may carry up to twice the
    // rate: the steady state is from one second after the first delivery. In it, with a backlog, a claim takes a
    // whole transaction (RECIPIENTS_PER_TRANSACTION) as soon as the bucket holds that many and a job that found it
    // short sleeps until it would, so a window of T seconds carries at most T × rate plus what the bucket held at
    // its start: one transaction, plus what accrues while every waiting job oversleeps its wake-up (timers of a
    // loaded machine), plus the jitter of this process's clock between a claim and its MAIL FROM at the sink.
    // The timestamps are taken in this process, which a loaded machine stalls now and then: what arrives
    // during a stall is stamped at its end, bunched. Windows of 3 s, and an allowance of one transaction
    // and half a second's worth of the rate (250 at 400/s), absorb that; a limiter per worker instead of
    // one shared (800/s here: 2,400 in 3 s against a bound of 1,450) or a rate off by a few per cent
    // over the long window still fails it.
    const WINDOW_MS = 3000;
    const ALLOWANCE = PER_TRANSACTION + RATE / 2;
    const from = first + 1000;
    let max = 0;
    let maxAt = 0;
    for (const w of d) {
      if (w.at < from || w.at + WINDOW_MS > last) continue;
      const inWindow = d.filter((x) => x.at >= w.at && x.at < w.at + WINDOW_MS).reduce((n, x) => n + x.n, 0);
      if (inWindow > max) (max = inWindow), (maxAt = w.at);
    }
    const steady = d.filter((x) => x.at >= from && x.at < last).reduce((n, x) => n + x.n, 0); // [from, last): T = last - from
    const average = (steady * 1000) / Math.max(1, last - from);
    const firstSecond = d.filter((x) => x.at < from).reduce((n, x) => n + x.n, 0);
    expect(last - from, "a steady state of several windows").toBeGreaterThan(2 * WINDOW_MS);
    expect(max, `busiest ${WINDOW_MS / 1000} s window of the steady state, starting ${maxAt - first} ms after the first delivery (seed ${SEED})`).toBeLessThanOrEqual((RATE * WINDOW_MS) / 1000 + ALLOWANCE);
    expect(firstSecond, "the first second: the full bucket and one second's refill").toBeLessThanOrEqual(2 * RATE + ALLOWANCE);
    // And the whole steady state, a window of several seconds, by the same rule: its length's worth plus the allowance.
    expect(steady, "the whole steady state").toBeLessThanOrEqual((RATE * (last - from)) / 1000 + ALLOWANCE);
    figures.push(
      `send rate ${RATE}/s, two workers, ${N} recipients (transaction starts at the sink): busiest ${WINDOW_MS / 1000} s window of the steady state ${max} at +${maxAt - first} ms (bound ${(RATE * WINDOW_MS) / 1000 + ALLOWANCE}), ` +
        `steady state ${steady} in ${last - from} ms = ${average.toFixed(0)}/s (bound ${Math.floor((RATE * (last - from)) / 1000 + ALLOWANCE)}), first second ${firstSecond} (bound ${2 * RATE + ALLOWANCE})`,
    );
  }, TEST_TIMEOUT);

  it("takes a SIGKILLed worker's batches over within 10 s; doubles only among its in-flight transactions", async () => {
    const N = 6_000; // 6 batches over 2 × 5 slots: both hold some; the one holding more (at least 3) is killed, so the survivor has free slots
    await audience("pair", N);
    const address = (i: number) => `pair-${String(i).padStart(5, "0")}@corp.example`;
    const m = await approved("pair", "Two workers, one killed");
    await bothSending(m.messageId, 1_000);
    await sleep(random() * 1000); // the kill's moment: seeded, deliberately random
    const held = NAMES.map((n) => batchesBy(m.messageId, n).size);
    const v: 0 | 1 = held[0]! >= held[1]! ? 0 : 1;
    const s: 0 | 1 = v === 0 ? 1 : 0;
    // Killed inside a transaction for certain: the sink holds the reply to the victim's next DATA.
    const hold = await holdNextData(m.messageId, "original", NAMES[v]);
    const locks = await lockHolders(m.id);
    const victimBatches = batchesBy(m.messageId, NAMES[v]);
    const deliveredBefore = new Set(deliveries(m.messageId).flatMap((r) => r.to));
    const killedAt = Date.now();
    await pair[v]!.kill9();
    hold.release();
    // Its in-flight transactions: claimed and unsettled in Redis right after its death, in its batches.
    const inFlightAtKill = new Set([...(await inFlight(m.id, "original"))].filter((a) => victimBatches.has(batchOf(a))));

    const sent = await until("sent", async () => {
      const x = await get(m.id);
      return x.state === "sent" ? x : undefined;
    }, 120_000);
    expect(sent.counts.sent).toBe(N);
    // It held jobs: BullMQ's active jobs under its lock are the batches its connections were delivering...
    const victimLocks = locks.find((g) => g.some((b) => victimBatches.has(b)));
    expect(victimLocks, `BullMQ locks ${JSON.stringify(locks)}, victim's batches ${[...victimBatches]} (seed ${SEED})`).toEqual([...victimBatches].sort((x, y) => x - y));
    // ...and it left them unfinished: recipients of its batches not yet delivered at the kill.
    const dead = new Set(
      [...victimBatches].filter((b) => {
        for (let i = b * BATCH_SIZE; i < Math.min(N, (b + 1) * BATCH_SIZE); i++) if (!deliveredBefore.has(address(i))) return true;
        return false;
      }),
    );
    expect(dead.size).toBeGreaterThan(0);
    // "Sending resumes": the time from the kill (SIGKILL sent) to the first delivery, by the surviving worker, to
    // a recipient of a batch the dead worker had claimed and not finished. Goal 10 s (the lock lapses at most
    // 6 s after the last renewal and a stalled-job check sees it within 2 s more: 8 s); allowance 5 s for a
    // loaded CI machine.
    const resumedAt = Math.min(...deliveries(m.messageId).filter((r) => ehloOf(r) === NAMES[s] && r.at > killedAt && r.to.some((a) => dead.has(batchOf(a)))).map((r) => r.at));
    const resumeMs = resumedAt - killedAt;
    expect(resumeMs, `from the kill to the dead worker's batches being sent again (seed ${SEED})`).toBeLessThanOrEqual(15_000);
    // Meanwhile the survivor's own batches went on: the longest silence of the whole send after the kill.
    const times = deliveries(m.messageId)
      .map((r) => r.at)
      .filter((t) => t >= killedAt)
      .sort((a, b) => a - b);
    const gap = Math.max(times[0]! - killedAt, ...times.slice(1).map((t, i) => t - times[i]!));

    const cut = cutBy(killedAt, NAMES[v]);
    expect(cut.length, "the kill landed inside a transaction").toBeGreaterThanOrEqual(1);
    expect(inFlightAtKill.size).toBeLessThanOrEqual(POOL * PER_TRANSACTION);
    const flagged = await flaggedFor(m.id);
    expect([...flagged].filter((a) => !inFlightAtKill.has(a)), `flagged but not in the dead worker's in-flight transactions (seed ${SEED})`).toEqual([]);
    const r = checkDelivery("two workers, one killed", copies(m.messageId), N, flagged, new Map([...inFlightAtKill].map((a) => [a, 1])));
    expect(hold.to.filter((a) => !r.twice.includes(a)), "the held transaction's recipients got it again").toEqual([]);
    figures.push(
      `two workers (defaults: WORKER_LOCK_SECONDS 6), one kill -9 at ${deliveredBefore.size}/${N} delivered: the victim held batches ${[...victimBatches].sort((x, y) => x - y)} (BullMQ locks ${JSON.stringify(locks)}), ${dead.size} unfinished; ` +
        `its batches sent again ${resumeMs} ms after the kill (goal 10,000, asserted ≤ 15,000); longest silence of the send after the kill ${gap} ms; ` +
        `${cut.length} transaction(s) cut; ${inFlightAtKill.size} in flight at the kill, ${flagged.size} flagged, ${r.twice.length} received twice (all among them)`,
    );
    pair[v] = await spawnAirlock("worker", pairEnv(v));
    await auditIntact("a kill of one of two workers");
  }, TEST_TIMEOUT);

  it("a worker stalled for 3 s (SIGSTOP) keeps its batches: nobody gets it twice, nothing is flagged", async () => {
    const N = 4_000;
    await audience("stall", N);
    const m = await approved("stall", "A worker stalls for 3 s");
    // The stalled one is the worker holding more batches (it may hold them all: then the other is idle, free to take them over).
    await until("sending", async () => deliveries(m.messageId).reduce((n, r) => n + r.to.length, 0) >= 600);
    const held = NAMES.map((n) => batchesBy(m.messageId, n).size);
    const v: 0 | 1 = held[0]! >= held[1]! ? 0 : 1;
    const s: 0 | 1 = v === 0 ? 1 : 0;
    const itsBatches = batchesBy(m.messageId, NAMES[v]);
    const stoppedAt = Date.now();
    pair[v]!.stop();
    await sleep(3_000); // the stall itself: a deliberate 3 s, the length the goal names (not a wait for another process)
    pair[v]!.cont();
    const resumedAt = Date.now();
    const sent = await until("sent", async () => {
      const x = await get(m.id);
      return x.state === "sent" ? x : undefined;
    });
    expect(sent.counts.sent).toBe(N);
    const r = checkDelivery("a 3 s stall", copies(m.messageId), N, await flaggedFor(m.id));
    expect(r.twice).toEqual([]);
    expect(sent.possibleDuplicates).toBe(0);
    // Its jobs were not taken over: the other worker delivered to none of its batches, it delivered to them after the
    // stall, BullMQ recorded no stalled job, and none of its connections went away.
    const others = batchesBy(m.messageId, NAMES[s]);
    expect([...itsBatches].filter((b) => others.has(b))).toEqual([]);
    expect(deliveries(m.messageId).some((x) => ehloOf(x) === NAMES[v] && x.at > resumedAt)).toBe(true);
    const events = await store.xrange(`${QUEUE_PREFIX}:${QUEUES.fanout}:events`, String(stoppedAt - 1000), "+");
    expect(events.length, "the queue's event stream is read").toBeGreaterThan(0);
    expect(events.filter(([, f]) => f[0] === "event" && f[1] === "stalled")).toEqual([]);
    expect(sink.cut().filter((t) => t.ehlo === NAMES[v] && t.cutAt! >= stoppedAt)).toEqual([]);
    const during = deliveries(m.messageId).filter((x) => x.at >= stoppedAt && x.at < resumedAt);
    figures.push(
      `two workers, one stalled 3 s (SIGSTOP) holding batches ${[...itsBatches].sort((x, y) => x - y)}: kept them (no stalled job, no cut), ${N} recipients none twice, possibleDuplicates ${sent.possibleDuplicates}; ` +
        `${during.reduce((n, x) => n + x.to.length, 0)} delivered by the other during the stall`,
    );
    await auditIntact("a 3 s stall");
  }, TEST_TIMEOUT);
});
