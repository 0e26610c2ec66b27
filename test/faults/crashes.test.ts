/**
 * Fault injection with real processes: the API and the workers run as child processes against a
 * real redis-server (AOF, `appendfsync always`) and a real SMTP sink; the test kills them for real.
 *
 * - kill -9 the worker at seeded random moments of a 20,000-recipient fan-out, and of its
 *   correction fan-out: every recipient gets the original (and then the correction) at least once
 *   and at most twice, and those who got it twice are no more than the counted possible duplicates.
 * - kill -9 Redis during the hold and during a fan-out: the acknowledged approval and recall are
 *   still there, the message releases, the fan-out resumes, nobody is lost.
 * - SIGTERM a worker mid-fan-out: it exits within 10 s and nothing is lost.
 *
 * The seed is printed; FAULT_SEED=<n> replays a schedule.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startSmtpSink, type SmtpSink } from "../support/smtp-sink.js";
import { startTestRedis, type TestRedis } from "../support/redis.js";
import { api, seeded, spawnAirlock, writeUsers, type AirlockProcess } from "../support/processes.js";

const SEED = Number(process.env.FAULT_SEED ?? Date.now() % 1_000_000);
const random = seeded(SEED);
const figures: string[] = [];

let redis: TestRedis;
let sink: SmtpSink;
let dir: string;
let env: Record<string, string>;
let apiProc: AirlockProcess;
let worker: AirlockProcess;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, check: () => Promise<T | undefined | false>, deadlineMs = 90_000): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await check().catch(() => undefined); // Redis or the API may be restarting
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what} (seed ${SEED})`);
    await sleep(100); // state reached by background processes: poll
  }
}

const get = async (id: string) => (await api(apiProc.url, "ops", "GET", `/api/messages/${id}`)).body;

async function audience(name: string, size: number): Promise<void> {
  const recipients = Array.from({ length: size }, (_, i) => ({ email: `${name}-${String(i).padStart(5, "0")}@corp.example` }));
  expect((await api(apiProc.url, "admin", "POST", "/api/audiences", { name, recipients })).status).toBe(201);
}

async function approved(list: string, subject: string, extra: object = {}): Promise<{ id: string; messageId: string }> {
  const m = (await api(apiProc.url, "author", "POST", "/api/messages", { subject, text: "Fault test.", audience: { lists: [list] }, ...extra })).body;
  expect(m.id, JSON.stringify(m)).toBeDefined();
  expect((await api(apiProc.url, "approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  if (m.requiredApprovals > 1) expect((await api(apiProc.url, "approver2", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  return { id: m.id, messageId: m.messageId };
}

/** How many times each address received the mail with this Message-ID (or, for corrections, in reply to it). */
function copies(messageId: string, correction = false): Map<string, number> {
  const n = new Map<string, number>();
  for (const r of sink.received) {
    const hit = correction ? r.mail.inReplyTo === messageId : r.mail.messageId === messageId;
    if (hit) for (const to of r.to) n.set(to, (n.get(to) ?? 0) + 1);
  }
  return n;
}

function checkDelivery(what: string, counts: Map<string, number>, expected: number, possibleDuplicates: number): { twice: number } {
  const values = [...counts.values()];
  expect(counts.size, `${what}: recipients reached (seed ${SEED})`).toBe(expected);
  expect(Math.max(...values), `${what}: at most twice (seed ${SEED})`).toBeLessThanOrEqual(2);
  const twice = values.filter((v) => v === 2).length;
  expect(twice, `${what}: doubles are counted (seed ${SEED})`).toBeLessThanOrEqual(possibleDuplicates);
  return { twice };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "airlock-faults-"));
  [redis, sink] = await Promise.all([startTestRedis({ appendfsync: "always" }), startSmtpSink()]);
  env = {
    REDIS_URL: redis.url,
    SMTP_URL: sink.url,
    USERS_FILE: writeUsers(dir),
    LINK_SECRET: "fault-link-secret-0123456789abcdef0123456789",
    HOLD_MIN_SECONDS: "1",
    // ~5 s for 20,000: long enough to crash it several times.
    SEND_RATE_PER_SECOND: "4000",
    RECIPIENTS_PER_TRANSACTION: "50",
    SMTP_POOL_SIZE: "5",
    // A crashed worker's jobs are taken over after 2 s instead of 30.
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
  await sink?.close();
  await redis?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("a worker killed with SIGKILL", () => {
  it("delivers the original and the correction to everyone, at most twice, doubles counted", async () => {
    const N = 20_000;
    await audience("everyone", N);
    const m = await approved("everyone", "Crash me");
    await until("sending", async () => (await get(m.id)).state === "sending");

    let kills = 0;
    const crash = async (until: () => Promise<boolean>, times: number) => {
      for (let i = 0; i < times && !(await until()); i++) {
        await sleep(200 + random() * 900);
        await worker.kill9();
        kills++;
        worker = await spawnAirlock("worker", env);
      }
    };
    await crash(async () => (await get(m.id)).state !== "sending", 3);
    const sent = await until("sent", async () => {
      const s = await get(m.id);
      return s.state === "sent" ? s : undefined;
    });
    expect(sent.counts.sent + sent.counts.failed).toBe(N);
    const originals = checkDelivery("original", copies(m.messageId), N, sent.possibleDuplicates);

    expect((await api(apiProc.url, "ops", "POST", `/api/messages/${m.id}/recall`, { reason: "fault test" })).status).toBe(200);
    await crash(async () => (await get(m.id)).state !== "correcting", 2);
    const corrected = await until("corrected", async () => {
      const s = await get(m.id);
      return s.state === "corrected" ? s : undefined;
    });
    expect(corrected.counts.corrected).toBe(N);
    const corrections = checkDelivery("correction", copies(m.messageId, true), N, corrected.possibleDuplicates);
    figures.push(
      `worker kill -9: ${kills} kills, ${N} recipients checked for the original and ${N} for the correction; delivered twice: ${originals.twice} original, ${corrections.twice} correction; possibleDuplicates counted: ${corrected.possibleDuplicates}`,
    );
  });
});

describe("Redis killed with SIGKILL (AOF, appendfsync always)", () => {
  it("keeps an acknowledged approval and recall across a crash during the hold, and still releases on time", async () => {
    await audience("small", 500);
    const held = await approved("small", "Held across a Redis crash", { holdMinutes: 0.1 }); // a 6 s hold
    const recalled = await approved("small", "Recalled before a Redis crash", { holdMinutes: 10 });
    expect((await api(apiProc.url, "ops", "POST", `/api/messages/${recalled.id}/recall`, { reason: "before the crash" })).status).toBe(200);
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
    checkDelivery("held", copies(held.messageId), 500, sent.possibleDuplicates);
    expect(copies(recalled.messageId).size).toBe(0);
    figures.push(`redis kill -9 during the hold: approval and recall kept, released at its time, 500 recipients checked`);
  });

  it("resumes a fan-out cut by a Redis crash, losing nobody", async () => {
    const N = 10_000;
    await audience("mid", N);
    const m = await approved("mid", "Fan-out across a Redis crash");
    await until("some sent", async () => (await get(m.id)).counts.sent > 1000);
    await redis.kill();
    await sleep(300); // Redis is down for a moment: workers and API see connection errors
    await redis.restart();
    const sent = await until("sent", async () => {
      const s = await get(m.id);
      return s.state === "sent" ? s : undefined;
    }, 120_000);
    expect(sent.counts.sent + sent.counts.failed).toBe(N);
    const r = checkDelivery("across the crash", copies(m.messageId), N, sent.possibleDuplicates);
    figures.push(`redis kill -9 mid-fan-out: ${N} recipients checked, delivered twice ${r.twice}, possibleDuplicates ${sent.possibleDuplicates}`);
  });
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
    const retry = await api(apiProc.url, "ops", "POST", `/api/messages/${m.id}/recall`, { reason: "retry" });
    expect([200, 409]).toContain(retry.status);
    const done = await until("corrected", async () => {
      const s = await get(m.id);
      return s.state === "corrected" ? s : undefined;
    });
    const events = (await api(apiProc.url, "ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string }>;
    expect(events.filter((e) => e.action === "recall")).toHaveLength(1);
    expect(done.counts.corrected).toBe(N);
    const r = checkDelivery("correction after an API crash", copies(m.messageId, true), N, done.possibleDuplicates);
    expect(r.twice).toBe(0);
    figures.push(`API kill -9 during a recall: first request ${String(firstOutcome)}, retry ${retry.status}; one recall in the audit, ${N} corrections, none twice`);
  });
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
      const r = checkDelivery("through SMTP trouble", received, N - bad.size, sent.possibleDuplicates);
      expect(drops).toBe(3);
      expect(sent.possibleDuplicates).toBeGreaterThan(0); // the dropped transactions' recipients
      const events = (await api(apiProc.url, "ops", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string; at: string; detail: string }>;
      const retries = events.filter((e) => e.action === "smtpRetry");
      expect(retries.length).toBeGreaterThan(0);
      expect(retries.some((e) => /4[25]1/.test(e.detail))).toBe(true);
      expect(retries.some((e) => JSON.parse(e.detail).ambiguous === true)).toBe(true);
      figures.push(`SMTP 421/451 for 2.5 s then 3 drops after DATA, 10 × 550: ${retries.length} retried transactions on the audit, ${N - bad.size} delivered (${r.twice} twice, ${sent.possibleDuplicates} counted), ${bad.size} failed with the reply after ${rcptRefusals} refusals`);
    } finally {
      sink.behaviour = {};
    }
  });
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
    const r = checkDelivery("after SIGTERM", copies(m.messageId), N, sent.possibleDuplicates);
    expect(r.twice).toBe(0); // a graceful stop finishes or hands back its transactions: no doubt, no double
    figures.push(`worker SIGTERM mid-fan-out: exited in ${ms} ms, ${N} recipients checked, none twice`);
  });
});
