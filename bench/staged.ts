/**
 * The staged phase of `npm run bench` (issue 16): a staged send to a large audience, halted by
 * human replies during the wait after the canary, then continued by ops; and the same audience
 * sent all at once by the same service, for the rest's rate.
 *
 * One service process of its own (the staging settings: RETURN_PATH_DOMAIN starts its inbound SMTP
 * listener, a wait of `waitSeconds` after the canary, SIGNAL_REPLIES 3) and a recording Node sink
 * (its counts, its timestamps, and the early waves' Reply-To, which is where the replies go).
 *
 * - `planMs`, `canaryMs`: from the release (the hash's `releasedAt`) to the `wavesPlanned` and the
 *   `canaryWait` audit entries (the canary's last recipient settled, the wait begins).
 * - `haltMs`: two human replies, then the third, each a real SMTP transaction to the listener.
 *   From the 250 that answers the third reply's DATA, as its client receives it, to the halt
 *   reaching a subscriber of the events channel (the pause's `state` event of the message, its
 *   `paused` field read back to be sure). The listener records the signal before it answers 250
 *   (a failure answers 451, so the mail comes again), so the halt is committed by then: this is
 *   what an observer waits beyond the reply, 0 when the event was already there. `haltAfterDataMs`
 *   is from the end of the third reply's DATA (its last byte written) to the same event: the
 *   listener's parse, the signal script and the publish.
 * - `sentWhileHalted`: originals at the sink beyond the seed cohort and the canary, counted once
 *   the wait is over and its timer has run (and was refused: the send is halted).
 * - `restRateRatio`: the rest's recipients per second at the sink, from the continue's commit (the
 *   hash's `wave3At`) to the last original at the sink, against the all-at-once send's (the mean of
 *   two, one before and one after the staged one, by the same process), from its release to its last original at the sink.
 */
import type { Redis } from "ioredis";
import { connect } from "node:net";
import { freePort } from "../src/infra/redis-process.js";
import { BULL_PREFIX, QUEUES } from "../src/queues/catalogue.js";
import { keys } from "../src/store/keys.js";
import { round1 } from "./numbers.js";
import { api as apiOf, importAudience, pollUntil, submitAndApprove, type Api } from "./phases.js";
import type { RunningService } from "./service.js";
import type { Sink } from "./sink.js";

export interface StagedOptions {
  /** Starts the phase's service with `env` (the staging settings), sending to `sink`. */
  startService(env: Record<string, string>): Promise<RunningService>;
  redis: Redis;
  /** A recording Node sink: its counts, timestamps and the early mail's Reply-To. */
  sink: Sink;
  /** An audience of `recipients` imported by importAudience (bench/phases.ts). */
  audience: string;
  recipients: number;
  /** Members of the seed audience: the audience's first addresses. Default 20. */
  seedSize?: number;
  /** The wait after the canary (CANARY_WAIT_MINUTES in seconds): the replies must come within it. Default 3. */
  waitSeconds?: number;
  log?(s: string): void;
}

export interface StagedResult {
  recipients: number;
  seed: number;
  canary: number;
  planMs: number;
  canaryMs: number;
  haltMs: number;
  /** From the end of the third reply's DATA (its last byte written) to the halt on the events channel: the listener's parse, the signal script, the publish. */
  haltAfterDataMs: number;
  sentWhileHalted: number;
  restRcptPerSec: number;
  /** The mean of the two all-at-once sends (before and after the staged one). */
  unstagedRcptPerSec: number;
  /** Each of them: the one before (the process's first batched fan-out: JIT cold) and the one after. */
  unstagedRcptPerSecEach: number[];
  restRateRatio: number;
  /** Recipients the sink got the staged original for twice (must be 0). */
  duplicates: number;
}

const REPLIES = 3;
const RETURN_PATH_DOMAIN = "bounces.bench.example";

export async function runStagedPhase(o: StagedOptions): Promise<StagedResult> {
  const log = o.log ?? (() => {});
  const waitSeconds = o.waitSeconds ?? 3;
  const inboundPort = await freePort();
  const svc = await o.startService({
    RETURN_PATH_DOMAIN,
    INBOUND_SMTP_PORT: String(inboundPort),
    INBOUND_SMTP_HOST: "127.0.0.1",
    CANARY_WAIT_MINUTES: String(waitSeconds / 60),
    CANARY_PERCENT: "1",
    CANARY_MIN_RECIPIENTS: "50",
    SIGNAL_REPLIES: String(REPLIES),
  });
  const sub = o.redis.duplicate();
  try {
    const a = apiOf(svc.url);
    await importAudience(a, "bench-staged-seed", o.seedSize ?? 20);
    const events: Array<{ id: string; kind: string; at: number }> = [];
    let onEvent: (() => void) | null = null;
    sub.on("message", (_channel: string, text: string) => {
      const e = JSON.parse(text) as { id: unknown; kind: string };
      events.push({ id: String(e.id), kind: e.kind, at: performance.now() });
      onEvent?.();
    });
    await sub.subscribe(keys.events());

    // The same audience all at once before and after the staged send, the mean of both: the first
    // batched fan-out of a fresh process warms its JIT (the early waves' mail is composed apart),
    // and on a shared machine one fan-out of a second or two is a noisy sample.
    const unstagedRates = [await unstaged(a, o)];
    await o.sink.reset();
    const { id, recipientCount } = await submitAndApprove(a, o.audience, "Staged: the mobile device policy", { waves: true, seedAudience: "bench-staged-seed" });
    if (recipientCount !== o.recipients) throw new Error(`message ${id} has ${recipientCount} recipients, expected ${o.recipients}`);
    const hash = async (...fields: string[]) => {
      const values = await o.redis.hmget(keys.message(id), ...fields);
      return Object.fromEntries(fields.map((f, i) => [f, values[i] ?? null])) as Record<string, string | null>;
    };

    // 5 ms polls: the replies go as soon as the wait begins (they must come within it).
    const wait = await pollUntil(`message ${id}'s wait after the canary`, 120_000 + o.recipients, 5, async () => {
      const h = await hash("state", "waveOpen", "waveWaitUntil", "paused");
      if (h.state !== "scheduled" && h.state !== "sending") throw new Error(`message ${id} ended ${h.state} before its wait`);
      if (h.paused) throw new Error(`message ${id} halted before its wait: ${h.paused}`);
      return h.waveWaitUntil ? h : null;
    });
    const plan = await hash("releasedAt", "wave1Size", "wave2Size", "wave3Size");
    const releasedAt = Number(plan.releasedAt);
    const seed = Number(plan.wave1Size);
    const canary = Number(plan.wave2Size);
    const early = seed + canary;
    const audit = await auditTimes(o.redis, id);
    const planMs = audit.wavesPlanned! - releasedAt;
    const canaryMs = audit.canaryWait! - releasedAt;
    log(`staged: ${o.recipients} recipients, seed ${seed}, canary ${canary}; planned ${planMs} ms, canary done ${canaryMs} ms after the release`);

    const replyTo = (await o.sink.stats()).replyTo;
    if (!replyTo) throw new Error(`message ${id}: no Reply-To on its early waves' mail at the sink (a recording Node sink is needed)`);
    // The first ones at once (each waits out the listener's 100 ms greeting delay): the wait is short.
    const firstMs = (await Promise.all(Array.from({ length: REPLIES - 1 }, (_, i) => sendReply(inboundPort, replyTo, i)))).map((t) => round1(t.ack - t.start));
    const before = await hash("signalReplies", "paused");
    if (before.signalReplies !== String(REPLIES - 1) || before.paused) throw new Error(`message ${id}: after ${REPLIES - 1} replies, ${JSON.stringify(before)}`);
    // The halt's `state` event: the pause transition of the signal script (signals below the
    // threshold publish `progress` only). Its `paused` is read back before it counts.
    const armedAt = events.length;
    let timer: NodeJS.Timeout | undefined;
    const halt = new Promise<number>((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(`message ${id}: no halt within 30 s of the third reply`)), 30_000);
      let checking = false;
      const check = async () => {
        const e = events.slice(armedAt).find((x) => x.id === id && x.kind === "state");
        if (!e || checking) return;
        checking = true;
        if (await o.redis.hexists(keys.message(id), "paused")) resolve(e.at);
        else reject(new Error(`message ${id}: a state event after the third reply, but not paused`));
      };
      onEvent = () => void check().catch(reject);
    });
    halt.catch(() => {}); // awaited below; a failed reply must not leave it unhandled
    let third: ReplyTimes;
    let haltSeenAt: number;
    try {
      third = await sendReply(inboundPort, replyTo, REPLIES - 1);
      haltSeenAt = await halt;
    } finally {
      clearTimeout(timer);
      onEvent = null;
    }
    const haltMs = Math.max(0, haltSeenAt - third.ack);
    const halted = await hash("paused", "waveOpen", "haltedBy");
    if (halted.waveOpen !== "2") throw new Error(`message ${id}: halted with wave ${halted.waveOpen} open (the wait of ${waitSeconds} s ended before the third reply?)`);
    log(`staged: replies 1-${REPLIES - 1} took ${firstMs.join(", ")} ms, the third ${round1(third.ack - third.start)} ms (connect to 250, the 100 ms greeting delay included); its end of DATA to the 250 ${round1(third.ack - third.dataEnd)} ms, to the halt on the events channel ${round1(haltSeenAt - third.dataEnd)} ms; the halt came ${round1(haltSeenAt - third.ack)} ms after the 250 (negative: before): ${halted.haltedBy}`);

    // The wait's end while halted: its timer runs, is refused, and its job is removed (removeOnComplete).
    const timerJob = `${BULL_PREFIX}:${QUEUES.timers}:wave-${id}-${wait.waveWaitUntil}`;
    await pollUntil(`message ${id}'s timer at the end of the wait`, waitSeconds * 1000 + 30_000, 20, async () => {
      if (Date.now() < Number(wait.waveWaitUntil)) return null;
      const failed = await o.redis.hget(timerJob, "failedReason");
      if (failed) throw new Error(`message ${id}: the wait's timer failed: ${failed}`);
      return (await o.redis.exists(timerJob)) === 0 ? true : null;
    });
    const whileHalted = await hash("paused", "sent", "inflight");
    if (!whileHalted.paused) throw new Error(`message ${id}: no longer halted after the wait's timer`);
    const halted0 = (await o.sink.stats()).original;
    const atSink = halted0?.recipients ?? 0;
    const atSinkMessages = halted0?.messages ?? 0;
    const sentWhileHalted = atSink - early;
    log(`staged: the wait is over while halted: ${atSink} originals at the sink (seed + canary ${early}), ${whileHalted.sent} sent, ${whileHalted.inflight ?? 0} in flight`);

    const continued = await a.call("ops", "POST", `/api/messages/${id}/continue`, {});
    if (continued.status !== 200) throw new Error(`continue: HTTP ${continued.status} ${JSON.stringify(continued.body).slice(0, 300)}`);
    const done = await untilSent(o.redis, id, o.recipients);
    const s = await o.sink.stats();
    const rest = (s.original?.recipients ?? 0) - atSink;
    if (rest !== o.recipients - early || s.distinctOriginals !== o.recipients) throw new Error(`message ${id}: ${rest} of the rest (${o.recipients - early}) and ${s.distinctOriginals} distinct recipients at the sink`);
    const restRcptPerSec = (rest * 1000) / (s.original!.lastAt - Number(done.wave3At));
    const duplicates = s.duplicates ?? 0;
    log(`staged: the rest, ${rest} recipients in ${s.original!.messages - atSinkMessages} transactions, at ${Math.round(restRcptPerSec)}/s from the continue to the sink's last, finished ${Number(done.finishAt) - Number(done.wave3At)} ms after the continue by the service's clock`);

    unstagedRates.push(await unstaged(a, o));
    const unstagedRcptPerSec = (unstagedRates[0]! + unstagedRates[1]!) / 2;
    log(`staged: the same audience all at once, before and after: ${unstagedRates.map(Math.round).join("/s, ")}/s`);
    return {
      recipients: o.recipients,
      seed,
      canary,
      planMs,
      canaryMs,
      haltMs: round1(haltMs),
      haltAfterDataMs: round1(haltSeenAt - third.dataEnd),
      sentWhileHalted,
      restRcptPerSec: Math.round(restRcptPerSec),
      unstagedRcptPerSec: Math.round(unstagedRcptPerSec),
      unstagedRcptPerSecEach: unstagedRates.map(Math.round),
      restRateRatio: Math.round((restRcptPerSec / unstagedRcptPerSec) * 100) / 100,
      duplicates,
    };
  } finally {
    sub.disconnect();
    await svc.stop();
  }
}

/** The audience all at once (the service stages only when asked: bench/service.ts WAVES_THRESHOLD 0): from its release to its last original at the sink. */
async function unstaged(a: Api, o: StagedOptions): Promise<number> {
  await o.sink.reset();
  const { id } = await submitAndApprove(a, o.audience, "All at once: the mobile device policy");
  if (await o.redis.hexists(keys.message(id), "waveOpen")) throw new Error(`message ${id} was staged: the all-at-once send must not be`);
  const done = await untilSent(o.redis, id, o.recipients);
  const s = await o.sink.stats();
  if (s.original?.recipients !== o.recipients || s.distinctOriginals !== o.recipients) throw new Error(`message ${id}: ${s.original?.recipients} originals, ${s.distinctOriginals} distinct at the sink, expected ${o.recipients}`);
  o.log?.(`staged: all at once: ${s.original.messages} transactions, finished ${Number(done.finishAt) - Number(done.releasedAt)} ms after the release by the service's clock`);
  return (o.recipients * 1000) / (s.original.lastAt - Number(done.releasedAt));
}

/** Polls until every recipient is sent (100 ms: the timing comes from stored timestamps and the sink's). */
async function untilSent(redis: Redis, id: string, n: number): Promise<{ releasedAt: string; wave3At: string | null; finishAt: string }> {
  return pollUntil(`message ${id} sent`, 120_000 + n, 100, async () => {
    const [state, sent, failed, releasedAt, wave3At, finishAt] = await redis.hmget(keys.message(id), "state", "sent", "failed", "releasedAt", "wave3At", "finishAt");
    if (state === "sent") {
      if (Number(sent) !== n) throw new Error(`message ${id}: ${sent} sent, ${failed} failed of ${n}`);
      return { releasedAt: releasedAt!, wave3At: wave3At ?? null, finishAt: finishAt! };
    }
    if (state !== "scheduled" && state !== "sending") throw new Error(`message ${id} ended ${state}`);
    return null;
  });
}

/** The time (epoch ms) of the first audit entry of each action of the message. */
async function auditTimes(redis: Redis, id: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [, fields] of await redis.xrange(keys.audit(id), "-", "+")) {
    const f: Record<string, string> = {};
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i]!] = fields[i + 1]!;
    if (f.action && out[f.action] === undefined) out[f.action] = Number(f.at);
  }
  for (const action of ["wavesPlanned", "canaryWait"]) if (out[action] === undefined) throw new Error(`message ${id}: no ${action} in its audit trail`);
  return out;
}

/** When a reply's last byte of DATA was written and when its 250 came back (performance.now()). */
interface ReplyTimes {
  start: number;
  dataEnd: number;
  ack: number;
}

/**
 * A human reply (no Auto-Submitted, a person's From) to the early waves' Reply-To, as a remote MTA
 * would hand it over: one connection, one transaction, each command awaited (a plain socket, so the
 * end of DATA is known to the microsecond; smtp-server greets after 100 ms, its early-talker check).
 */
async function sendReply(port: number, to: string, i: number): Promise<ReplyTimes> {
  const from = `colleague${i}@corp.example`;
  const body = [`From: Colleague ${i} <${from}>`, `To: ${to}`, "Subject: Re: Update to the mobile device policy", `Message-ID: <bench-reply-${i}-${Date.now()}@corp.example>`, "Content-Type: text/plain; charset=utf-8", "", "Is this right? We were told the opposite yesterday.", ".", ""].join("\r\n");
  const start = performance.now();
  const sock = connect(port, "127.0.0.1");
  sock.setNoDelay(true);
  let buf = "";
  let waiter: (() => void) | null = null;
  let failure: Error | null = null;
  sock.on("data", (d: Buffer) => ((buf += d.toString("latin1")), waiter?.()));
  sock.on("error", (e) => ((failure = e), waiter?.()));
  sock.on("close", () => ((failure ??= new Error("connection closed")), waiter?.()));
  /** Writes `cmd` (if any) and waits for the final line of a reply; throws unless its code is `code`. */
  const step = async (cmd: string | null, code: string) => {
    buf = "";
    if (cmd !== null) sock.write(cmd);
    const line = await new Promise<string>((resolve, reject) => {
      waiter = () => {
        const m = /(?:^|\r\n)(\d{3}) [^\r\n]*\r\n$/.exec(buf);
        if (m) resolve(m[0].trim());
        else if (failure) reject(failure);
      };
      waiter();
    });
    waiter = null;
    if (!line.startsWith(code)) throw new Error(`reply ${i}: ${cmd?.trim().slice(0, 40) ?? "greeting"} answered ${line}`);
  };
  try {
    await step(null, "220");
    await step("EHLO mta.corp.example\r\n", "250");
    await step(`MAIL FROM:<${from}>\r\n`, "250");
    await step(`RCPT TO:<${to}>\r\n`, "250");
    await step("DATA\r\n", "354");
    buf = "";
    sock.write(body);
    const dataEnd = performance.now();
    await step(null, "250");
    const ack = performance.now();
    sock.end("QUIT\r\n");
    return { start, dataEnd, ack };
  } finally {
    sock.destroySoon();
  }
}
