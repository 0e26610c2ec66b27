/**
 * Model-based: random sequences of fast-check commands — create (or save a draft), submit, discard,
 * edit, approve (sometimes naming a stale revision), reject, withdraw, recall (now, at the release,
 * after some copies went out, after the fan-out; with or without a custom correction text), decide
 * a correction text, let time pass until a fan-out ends, crash the workers (in process: stopped
 * without finishing their jobs, new ones started) — by random actors (authors, approvers, the author
 * who is also an approver, ops, admin) against the real service.
 *
 * Every command is predicted first by a reference model written from SPEC.md
 * (test/support/reference-model.ts: states, roles, four eyes, approvals per revision, approvals
 * required, hold, recall → recalled or correcting → corrected, correction texts): the HTTP status and
 * the message right after. After every command each message of the run is read back and compared
 * with the model, allowing only the moves Airlock makes by itself (release after the hold, end of a
 * fan-out, end of a correction). A disagreement fails with both views and the commands so far.
 *
 * Sending is slow on purpose (8 recipients/s across all fan-outs, one per SMTP transaction,
 * audiences of 16 or 24), so that recalls land while a fan-out runs. Every run has at least one such
 * mid-send recall (some recipients had the original, some not): if its commands made none, a final
 * scenario (drawn with the commands) makes one. Once everything has settled, the
 * promises are checked against what the real SMTP sink received and when:
 *   1. nothing went out but the approved revision, approved by enough people other than its author;
 *   2. nothing went out before the hold had passed since the approval;
 *   3. after a recall's answer, no copy of the original arrives but those of the transaction in
 *      flight at the recall (one per fan-out job), none begins later than a moment after the
 *      answer, and nobody beyond the recall's `delivered` count received it;
 *   4. every recipient who received a recalled message got exactly one threaded correction;
 *   7. a custom correction text went out only after someone other than the recaller approved it.
 * (kill -9 of real processes is in test/faults/crashes.test.ts.)
 *
 * Every execution draws a fresh seed and prints it (and, on a failure, fast-check's path):
 * MODEL_SEED=<n> replays it, MODEL_SEED=<n> MODEL_PATH=<path> only the failing case. MODEL_RUNS sets
 * the number of cases (default 6); MODEL_VERBOSE=1 prints each case's commands.
 */
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAirlock, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";
import type { Received, SinkTransaction } from "../support/smtp-sink.js";
import { differences, predict, reachable, UNRELEASED, type Command, type Expected, type ModelMessage, type ModelState, type Observed, type Person, type Policy } from "../support/reference-model.js";

const SEED = process.env.MODEL_SEED !== undefined && process.env.MODEL_SEED !== "" ? Number(process.env.MODEL_SEED) : Math.floor(Math.random() * 0x7fffffff);
const PATH = process.env.MODEL_PATH || undefined;
/** With MODEL_PATH, the one case it names (unless MODEL_RUNS says more). */
const RUNS = Number(process.env.MODEL_RUNS ?? (PATH ? 1 : 6));
/** MODEL_VERBOSE=1 prints each run's commands. */
const VERBOSE = !!process.env.MODEL_VERBOSE;

/** The configuration the model is told about, and the one the service runs with. */
const POLICY: Policy = { holdMs: 1000, approvalsRequired: 1, largeAudience: 20, largeAudienceApprovals: 2, correctionApprovals: 1, approvalTtlMs: 72 * 3600_000 };
const ENV = {
  HOLD_MIN_SECONDS: String(POLICY.holdMs / 1000),
  APPROVALS_REQUIRED: String(POLICY.approvalsRequired),
  LARGE_AUDIENCE_THRESHOLD: String(POLICY.largeAudience),
  LARGE_AUDIENCE_APPROVALS: String(POLICY.largeAudienceApprovals),
  CORRECTION_APPROVALS: String(POLICY.correctionApprovals),
  APPROVAL_TTL_HOURS: String(POLICY.approvalTtlMs / 3600_000),
  // 8 recipients/s shared by every fan-out, one per SMTP transaction: a 24-recipient fan-out lasts
  // 2-3 s (the first 8 go at once: the bucket's burst), so recalls land while it runs.
  SEND_RATE_PER_SECOND: "8",
  RECIPIENTS_PER_TRANSACTION: "1",
  WORKER_LOCK_SECONDS: "2",
};
/** Audience sizes: a few (one approval), a fan-out that lasts (one approval), a large one (two approvals: LARGE_AUDIENCE_THRESHOLD). */
const SIZES = { small: 3, medium: 16, large: 24 } as const;
type Size = keyof typeof SIZES;
/** A transaction in flight at a recall may begin its SMTP dialogue a little after the answer (the client's connection pool hands it over). */
const START_GRACE_MS = 1000;
const CUSTOM_TEXT = "The earlier figure was wrong: the deadline is Friday.";

/** The model's own view of who is who (checked against the users file the service runs with). */
const PEOPLE: Record<UserKey, Person> = {
  author: { email: "author@corp.example", roles: ["author"] },
  author2: { email: "author2@corp.example", roles: ["author"] },
  approver1: { email: "approver1@corp.example", roles: ["approver"] },
  approver2: { email: "approver2@corp.example", roles: ["approver"] },
  authorApprover: { email: "both@corp.example", roles: ["author", "approver"] },
  ops: { email: "ops@corp.example", roles: ["ops"] },
  admin: { email: "admin@corp.example", roles: ["admin"] },
};

const stats = {
  runs: 0,
  commands: 0,
  accepted: 0,
  refused: {} as Record<number, number>,
  crashes: 0,
  sent: 0,
  recalledBeforeRelease: 0,
  recalledAtRelease: 0,
  midSend: 0,
  midSendForced: 0,
  recalledAfterSent: 0,
  corrected: 0,
  customCorrections: 0,
  lateCopies: 0,
  maxLateStartMs: null as number | null,
  mostAtOnce: 0,
};
let a: TestAirlock;

beforeAll(async () => {
  a = await startAirlock(ENV);
});
afterAll(async () => {
  process.stdout.write(
    `model-based: seed ${SEED} (replay: MODEL_SEED=${SEED}), ${stats.runs} runs, ${stats.commands} commands (${stats.accepted} accepted, refused by status ${JSON.stringify(stats.refused)}, ${stats.crashes} worker crashes); ` +
      `${stats.sent} sent in full; recalls: ${stats.recalledBeforeRelease} before release, ${stats.recalledAtRelease} at release with nothing handed, ${stats.midSend} mid-send (${stats.midSendForced} by the final scenario), ${stats.recalledAfterSent} after the fan-out; ` +
      `${stats.corrected} corrected (${stats.customCorrections} with an approved custom text); ${stats.lateCopies} copies in flight at a recall arrived after its answer (${stats.maxLateStartMs === null ? "none" : `the latest began ${stats.maxLateStartMs} ms after it`}; at most ${stats.mostAtOnce} transaction(s) of one message open at once)\n`,
  );
  await a?.stop();
});

// ---------------------------------------------------------------------------------------------
// The world of one run: the messages it made, each with its model, and what the recalls answered.

interface RecallRecord {
  by: UserKey;
  requestedAt: number;
  answeredAt: number;
  delivered: number;
  /** Distinct recipients of the original at the sink when the answer came. */
  reachedAtAnswer: number;
  midSend: boolean;
}

interface Tracked {
  key: number;
  id: string;
  messageId: string;
  model: ModelMessage;
  /** The recipient addresses of each revision. */
  addresses: Map<number, string[]>;
  recall?: RecallRecord;
  /** When the request that settled a pending correction text was sent. */
  correctionDecidedAt?: number;
}

interface World {
  run: number;
  tracked: Tracked[];
  log: string[];
  midSend: number;
  crashes: number;
}

type Decision = "approveCorrection" | "rejectCorrection" | "standardCorrection";
type RecallAt = { wait: "now" } | { wait: "released" } | { wait: "copies"; n: number } | { wait: "sent" };
type Act =
  | { kind: "create"; who: UserKey; size: Size; draft: boolean }
  | { kind: "submit" | "discard" | "reject" | "withdraw"; who: UserKey; m: number }
  | { kind: "edit"; who: UserKey; m: number; size: Size }
  | { kind: "approve"; who: UserKey; m: number; stale: boolean }
  | { kind: "recall"; who: UserKey; m: number; at: RecallAt; text: boolean }
  | { kind: "correction"; who: UserKey; m: number; decision: Decision }
  | { kind: "await"; m: number }
  | { kind: "crash" };

function describe(x: Act): string {
  const { kind, ...rest } = x;
  return `${kind}(${Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : String(v)}`)
    .join(", ")})`;
}

class Step implements fc.AsyncCommand<World, TestAirlock> {
  constructor(readonly act: Act) {}
  check(): boolean {
    return true;
  }
  async run(w: World, real: TestAirlock): Promise<void> {
    await perform(w, real, this.act);
  }
  toString(): string {
    return describe(this.act);
  }
}

// ---------------------------------------------------------------------------------------------
// Generators. Weighted towards what reaches the interesting states; every actor still appears.

const writers = fc.constantFrom<UserKey>("author", "author", "author2", "authorApprover", "admin", "ops");
const anyone = fc.constantFrom<UserKey>(...(Object.keys(PEOPLE) as UserKey[]));
const deciders = fc.constantFrom<UserKey>("approver1", "approver2", "approver1", "approver2", "authorApprover", "admin", "author", "ops");
const recallers = fc.constantFrom<UserKey>("ops", "approver1", "approver2", "author", "author2", "authorApprover", "admin");
const m = fc.nat(63);
const size = fc.constantFrom<Size>("small", "medium", "medium", "large");
const recallAt = fc.oneof(
  { weight: 1, arbitrary: fc.constant<RecallAt>({ wait: "now" }) },
  { weight: 1, arbitrary: fc.constant<RecallAt>({ wait: "released" }) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: SIZES.medium - 2 }).map((n): RecallAt => ({ wait: "copies", n })) },
  { weight: 1, arbitrary: fc.constant<RecallAt>({ wait: "sent" }) },
);
const create = fc.record({ kind: fc.constant("create" as const), who: writers, size, draft: fc.oneof({ weight: 4, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) });
/** Each run begins with a message or three, so that its commands have something to act on. */
const prelude = fc.array(create, { minLength: 1, maxLength: 3 });
const act: fc.Arbitrary<Act> = fc.oneof(
  { weight: 6, arbitrary: create },
  { weight: 1, arbitrary: fc.record({ kind: fc.constantFrom("submit" as const, "discard" as const), who: writers, m }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("edit" as const), who: writers, m, size }) },
  { weight: 12, arbitrary: fc.record({ kind: fc.constant("approve" as const), who: deciders, m, stale: fc.oneof({ weight: 9, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("reject" as const), who: deciders, m }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("withdraw" as const), who: writers, m }) },
  { weight: 9, arbitrary: fc.record({ kind: fc.constant("recall" as const), who: recallers, m, at: recallAt, text: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("correction" as const), who: anyone, m, decision: fc.constantFrom<Decision>("approveCorrection", "approveCorrection", "rejectCorrection", "standardCorrection") }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("await" as const), m }) },
  { weight: 1, arbitrary: fc.constant({ kind: "crash" as const }) },
);
const commands = fc.commands([act.map((x) => new Step(x))], { maxCommands: 20, size: "max" });

/** The states where each command does something; `m` picks among those (newest first), one time in eight among all. */
const PREFER: Record<string, ModelState[]> = {
  submit: ["draft"],
  discard: ["draft"],
  edit: ["pending_approval", "rejected", "draft"],
  approve: ["pending_approval"],
  reject: ["pending_approval"],
  withdraw: ["pending_approval", "scheduled"],
  recall: ["scheduled", "sending"],
  correction: ["correcting"],
  await: ["scheduled", "sending", "correcting"],
};
function target(w: World, kind: string, m: number): Tracked | undefined {
  if (w.tracked.length === 0) return undefined;
  const preferred = w.tracked.filter((t) => PREFER[kind]!.includes(t.model.state));
  const pool = m % 8 !== 7 && preferred.length > 0 ? preferred : w.tracked;
  return pool[pool.length - 1 - (Math.floor(m / 8) % pool.length)];
}

// ---------------------------------------------------------------------------------------------
// Model against the real service.

function observedOf(b: any): Observed {
  return {
    state: b.state,
    revision: b.revision,
    author: b.author,
    approvals: (b.approvals ?? []).map((x: { by: string }) => x.by),
    requiredApprovals: b.requiredApprovals,
    recipientCount: b.recipientCount,
    subject: b.subject,
    releaseAt: b.releaseAt ? Date.parse(b.releaseAt) : null,
    recallBy: b.recall?.by ?? null,
    correction: b.correction ? { status: b.correction.status, approvals: (b.correction.approvals ?? []).map((x: { by: string }) => x.by) } : null,
  };
}

/** Fails the run with both views, and the commands that led there. */
function disagree(w: World, what: string, model: unknown, real: unknown): never {
  throw new Error(
    `model and service disagree: ${what}\n  model: ${JSON.stringify(model)}\n  real:  ${JSON.stringify(real)}\n  run ${w.run}, seed ${SEED}, commands so far:\n    ${w.log.join("\n    ")}`,
  );
}

const realView = (b: any) => (b && typeof b === "object" ? { ...observedOf(b), counts: b.counts, delivered: b.delivered, error: b.error } : b);

/**
 * Reads one message back and brings its model up to date: the observed state must be the model's,
 * or one that Airlock's own moves reach from it by now; everything else must agree.
 */
async function observe(w: World, t: Tracked): Promise<any> {
  const res = await a.call("ops", "GET", `/api/messages/${t.id}`);
  const now = Date.now();
  if (res.status === 404) {
    if (t.model.state !== "discarded") disagree(w, `message ${t.id} is gone`, t.model, res.body);
    return null;
  }
  if (res.status !== 200) disagree(w, `reading message ${t.id} answered ${res.status}`, t.model, res.body);
  const next = reachable(t.model, now, POLICY).find((c) => c.state === res.body.state);
  if (!next) disagree(w, `message ${t.id} is ${res.body.state}, which nothing but a person's command could have made of ${t.model.state}`, t.model, realView(res.body));
  t.model = next;
  const d = differences(t.model, observedOf(res.body));
  if (d.length > 0) disagree(w, `message ${t.id}: ${d.join("; ")}`, t.model, realView(res.body));
  return res.body;
}

async function observeAll(w: World): Promise<void> {
  for (const t of w.tracked) await observe(w, t);
}

const distinctOriginals = (t: Tracked, until = Infinity): number => new Set(a.sink.received.filter((r) => r.mail.messageId === t.messageId && r.at <= until).flatMap((r) => r.to)).size;

/**
 * One command through the model and the service: the model predicts, the service answers, the
 * answer must be one the model allows; the model then takes the outcome the service chose among
 * those it allowed (a recall during a fan-out: recalled or correcting).
 */
async function apply(w: World, t: Tracked | undefined, who: UserKey, cmd: Command, method: string, path: string, body?: unknown): Promise<{ status: number; body: any; expected: Expected; sentAt: number; answeredAt: number }> {
  if (t) await observe(w, t);
  const sentAt = Date.now();
  const expected = predict(t?.model, PEOPLE[who], cmd, POLICY, sentAt);
  const res = await a.call(who, method, path, body);
  const answeredAt = Date.now();
  stats.commands++;
  w.log[w.log.length - 1] += ` -> ${res.status}${res.body?.state ? ` ${res.body.state}` : ""}`;
  const what = `${who} ${cmd.kind} ${t ? `message ${t.id}` : ""} -> ${res.status}`;
  const fits = expected.filter((e) => e.statuses.includes(res.status));
  if (fits.length === 0) disagree(w, `${what}; the model expected ${expected.map((e) => `${e.statuses.join("|")} (${e.why})`).join(" or ")}`, t?.model ?? null, realView(res.body));
  if (res.status >= 400) {
    stats.refused[res.status] = (stats.refused[res.status] ?? 0) + 1;
    if (typeof res.body?.error?.code !== "string" || typeof res.body?.error?.message !== "string") disagree(w, `${what} without the error body`, fits[0]!.why, res.body);
    return { ...res, expected: fits[0]!, sentAt, answeredAt };
  }
  stats.accepted++;
  if (res.status === 204) {
    t!.model = fits[0]!.after!;
    return { ...res, expected: fits[0]!, sentAt, answeredAt };
  }
  // The answer shows the message a moment after the command: Airlock may have moved it on since.
  let closest: { model: ModelMessage; d: string[] } | undefined;
  for (const e of fits) {
    const after = reachable(e.after!, answeredAt, POLICY).find((c) => c.state === res.body.state);
    if (!after) continue;
    if (e.delivered && !(res.body.delivered >= e.delivered.min && res.body.delivered <= e.delivered.max)) continue;
    const model: ModelMessage = { ...after, id: res.body.id, ...(after.recall ? { recall: { ...after.recall, delivered: res.body.delivered } } : {}) };
    const d = differences(model, observedOf(res.body));
    if (d.length > 0) {
      closest ??= { model, d };
      continue;
    }
    if (t) t.model = model;
    return { ...res, expected: { ...e, after: model }, sentAt, answeredAt };
  }
  if (closest) disagree(w, `${what}: ${closest.d.join("; ")}`, closest.model, realView(res.body));
  return disagree(w, `${what} leaving it ${res.body?.state} (delivered ${res.body?.delivered}); the model expected ${fits.map((e) => `${e.after?.state}${e.delivered ? ` with delivered in [${e.delivered.min}, ${e.delivered.max}]` : ""}`).join(" or ")}`, t?.model ?? null, realView(res.body));
}

async function perform(w: World, real: TestAirlock, x: Act): Promise<void> {
  w.log.push(describe(x));
  if (x.kind === "crash") {
    await real.crashWorkers(); // jobs in hand are abandoned and taken over after the 2 s lock
    w.crashes++;
    stats.crashes++;
    await observeAll(w);
    return;
  }
  if (x.kind === "create") {
    const key = w.tracked.length;
    const addresses = Array.from({ length: SIZES[x.size] }, (_, i) => `r${w.run}-m${key}-${i}@corp.example`);
    const subject = `run ${w.run} message ${key} revision 1`;
    const cmd: Command = { kind: "create", draft: x.draft, recipients: addresses.length, subject };
    const res = await apply(w, undefined, x.who, cmd, "POST", "/api/messages", { subject, text: "Model.", audience: { addresses }, ...(x.draft ? { draft: true } : {}) });
    if (res.status === 201) {
      const model = { ...res.expected.after!, id: res.body.id };
      w.tracked.push({ key, id: res.body.id, messageId: res.body.messageId, model, addresses: new Map([[1, addresses]]) });
      w.log[w.log.length - 1] += `, message ${res.body.id}`;
    }
    await observeAll(w);
    return;
  }
  const t = target(w, x.kind, x.m);
  if (!t) return;
  w.log[w.log.length - 1] += ` on message ${t.id} (${t.model.state})`;
  const path = `/api/messages/${t.id}`;
  switch (x.kind) {
    case "submit":
      await apply(w, t, x.who, { kind: "submit" }, "POST", `${path}/submit`);
      break;
    case "discard":
      await apply(w, t, x.who, { kind: "discard" }, "DELETE", path);
      break;
    case "reject":
      await apply(w, t, x.who, { kind: "reject" }, "POST", `${path}/reject`, { reason: "model" });
      break;
    case "withdraw":
      await apply(w, t, x.who, { kind: "withdraw" }, "POST", `${path}/withdraw`);
      break;
    case "edit": {
      const addresses = Array.from({ length: SIZES[x.size] }, (_, i) => `r${w.run}-m${t.key}-e${t.addresses.size}-${i}@corp.example`);
      const subject = `run ${w.run} message ${t.key} revision ${t.model.revision + 1}`;
      const res = await apply(w, t, x.who, { kind: "edit", recipients: addresses.length, subject }, "PUT", path, { subject, text: "Model, edited.", audience: { addresses } });
      if (res.status === 200) t.addresses.set(t.model.revision, addresses);
      break;
    }
    case "approve": {
      const revision = x.stale ? t.model.revision + 1 : t.model.revision;
      await apply(w, t, x.who, { kind: "approve", revision }, "POST", `${path}/approve`, { revision });
      break;
    }
    case "recall":
      await recall(w, t, x.who, x.at, x.text);
      break;
    case "correction": {
      const pending = t.model.correction?.status === "pending";
      const sentAt = Date.now();
      const res = await apply(w, t, x.who, { kind: x.decision }, "POST", `${path}/correction/${{ approveCorrection: "approve", rejectCorrection: "reject", standardCorrection: "standard" }[x.decision]}`, x.decision === "rejectCorrection" ? { reason: "model" } : undefined);
      if (pending && res.status === 200 && t.model.correction?.status !== "pending") t.correctionDecidedAt = sentAt;
      break;
    }
    case "await":
      await awaitFanout(w, t);
      break;
  }
  await observeAll(w);
}

/** Time passes until the message's fan-out (original, then correction) is over, or a correction text awaits a decision. */
async function awaitFanout(w: World, t: Tracked): Promise<void> {
  await a.until(
    `message ${t.id}'s fan-out to end (run ${w.run})`,
    async () => {
      const b = await observe(w, t);
      if (!b) return true;
      if (b.state === "correcting" && b.correction?.status === "pending") return true;
      return !["scheduled", "sending", "correcting"].includes(b.state);
    },
    30_000,
  );
}

/**
 * A recall, after time has passed as asked: now; once released; once `n` recipients have the
 * original (a recall during the fan-out); once the fan-out is over.
 */
async function recall(w: World, t: Tracked, who: UserKey, at: RecallAt, text: boolean): Promise<RecallRecord | undefined> {
  if (at.wait !== "now" && (t.model.state === "scheduled" || t.model.state === "sending")) {
    await a.until(
      `message ${t.id} to be ${JSON.stringify(at)} (run ${w.run})`,
      async () => {
        const b = await observe(w, t);
        if (!b || !["scheduled", "sending"].includes(b.state)) return true;
        if (at.wait === "released") return b.state !== "scheduled";
        if (at.wait === "copies") return distinctOriginals(t) >= at.n;
        return false;
      },
      20_000,
    );
  }
  const before = t.model.state;
  const res = await apply(w, t, who, { kind: "recall", correctionText: text }, "POST", `/api/messages/${t.id}/recall`, { reason: "model", ...(text ? { correctionText: CUSTOM_TEXT } : {}) });
  if (res.status !== 200) return undefined;
  const delivered = res.body.delivered as number;
  const record: RecallRecord = {
    by: who,
    requestedAt: res.sentAt,
    answeredAt: res.answeredAt,
    delivered,
    reachedAtAnswer: distinctOriginals(t, res.answeredAt),
    midSend: delivered > 0 && delivered < t.model.recipients,
  };
  t.recall = record;
  // Whatever was recorded sent before the recall was at the sink before its answer (the sink records a copy before it answers the transaction).
  if (record.reachedAtAnswer > delivered) disagree(w, `the recall of message ${t.id} counted ${delivered} delivered, but ${record.reachedAtAnswer} recipients had it already`, t.model, realView(res.body));
  if (record.midSend) {
    w.midSend++;
    stats.midSend++;
  } else if (delivered === 0 && before === "scheduled") stats.recalledBeforeRelease++;
  else if (delivered === 0) stats.recalledAtRelease++;
  else stats.recalledAfterSent++;
  w.log[w.log.length - 1] += `, delivered ${delivered}${record.midSend ? " (mid-send)" : ""}`;
  return record;
}

/** How a run's final scenario goes (drawn with the run's commands, so a seed replays it). */
interface Finale {
  author: UserKey;
  size: "medium" | "large";
  /** Rotates the list of possible approvers: who approves, and who decides on a correction text. */
  rotate: number;
  /** Who recalls: ops, an approver, an admin, or the message's own author. */
  recaller: UserKey | "itsAuthor";
  /** Recalled once this many recipients have the original. */
  after: number;
  text: boolean;
}
const finale: fc.Arbitrary<Finale> = fc.record({
  author: fc.constantFrom<UserKey>("author", "author2", "authorApprover", "admin"),
  size: fc.constantFrom("medium" as const, "large" as const),
  rotate: fc.nat(3),
  recaller: fc.constantFrom<UserKey | "itsAuthor">("ops", "approver1", "approver2", "admin", "itsAuthor"),
  after: fc.integer({ min: 1, max: 6 }),
  text: fc.boolean(),
});

/**
 * The final scenario of a run whose commands made no mid-send recall: a message of a fan-out that
 * lasts, approved by as many people as it needs, recalled after a few copies went out; with a
 * custom correction text, its author (who may not decide on it) tries to approve it, then someone
 * else does. Tried again (later in the fan-out's life: fewer copies to wait for) if the recall
 * missed the fan-out.
 */
async function forceMidSendRecall(w: World, f: Finale): Promise<void> {
  const approvers = (["approver1", "approver2", "authorApprover", "admin"] as UserKey[]).filter((u) => u !== f.author);
  const order = [...approvers.slice(f.rotate % approvers.length), ...approvers.slice(0, f.rotate % approvers.length)];
  const recaller: UserKey = f.recaller === "itsAuthor" ? f.author : f.recaller;
  for (let attempt = 1; attempt <= 3 && w.midSend === 0; attempt++) {
    const key = w.tracked.length;
    w.log.push(`final scenario, attempt ${attempt}: ${JSON.stringify(f)}`);
    await perform(w, a, { kind: "create", who: f.author, size: f.size, draft: false });
    const t = w.tracked[key];
    if (!t) disagree(w, "the final scenario's message was not created", null, null);
    for (const who of order.slice(0, t.model.required)) await perform(w, a, { kind: "approve", who, m: 0, stale: false });
    if (t.model.state !== "scheduled") disagree(w, `the final scenario's message ${t.id} is not scheduled after its approvals`, t.model, null);
    const n = Math.max(1, f.after - attempt + 1);
    w.log.push(`recall(who=${recaller}, at={"wait":"copies","n":${n}}, text=${f.text}) on message ${t.id}`);
    const r = await recall(w, t, recaller, { wait: "copies", n }, f.text);
    await observeAll(w);
    if (r?.midSend) stats.midSendForced++;
    if (f.text && t.model.correction?.status === "pending") {
      await perform(w, a, { kind: "correction", who: recaller, m: 0, decision: "approveCorrection" }); // refused: their own text
      await perform(w, a, { kind: "correction", who: order.find((u) => u !== recaller)!, m: 0, decision: "approveCorrection" });
    }
  }
}

/** Everything settles: a correction text still pending is switched to the standard correction, every fan-out ends. */
async function settle(w: World): Promise<void> {
  for (const t of w.tracked) {
    await observe(w, t);
    if (t.model.state === "correcting" && t.model.correction?.status === "pending") {
      w.log.push(`settle: standardCorrection by ops on message ${t.id}`);
      const sentAt = Date.now();
      const res = await apply(w, t, "ops", { kind: "standardCorrection" }, "POST", `/api/messages/${t.id}/correction/standard`);
      if (res.status !== 200) disagree(w, `the switch to the standard correction of message ${t.id} answered ${res.status}`, t.model, res.body);
      t.correctionDecidedAt = sentAt;
    }
  }
  for (const t of w.tracked) await awaitFanout(w, t);
  await observeAll(w);
}

// ---------------------------------------------------------------------------------------------
// The promises, against what the SMTP sink received.

async function checkPromises(w: World, t: Tracked): Promise<void> {
  const real = await observe(w, t);
  const model = t.model;
  const originals = a.sink.received.filter((r) => r.mail.messageId === t.messageId);
  const corrections = a.sink.received.filter((r) => r.mail.inReplyTo === t.messageId);
  const reached = new Set(originals.flatMap((r) => r.to));
  const copies = originals.flatMap((r) => r.to).length;
  const fail = (what: string, extra: unknown = {}) => disagree(w, `message ${t.id}: ${what}`, model, { ...realView(real), ...(extra as object) });
  const handed = model.approved && !UNRELEASED.includes(model.state) && !(model.state === "recalled");
  if (!handed) {
    if (originals.length > 0 || corrections.length > 0) fail(`${originals.length} copies and ${corrections.length} corrections went out, but it was never handed to SMTP`);
    return;
  }
  const approved = model.approved!;
  const dup: number = real.possibleDuplicates ?? 0;
  // 1. What went out is the approved revision, to its frozen recipients, approved by enough people, none its author.
  for (const r of originals) if (r.mail.subject !== approved.subject) fail(`a copy went out with subject ${JSON.stringify(r.mail.subject)}, the approved revision's is ${JSON.stringify(approved.subject)}`);
  if (approved.by.length < model.required || approved.by.some((b) => b.toLowerCase() === model.author.toLowerCase()) || new Set(approved.by).size !== approved.by.length) fail(`approved by ${JSON.stringify(approved.by)}`);
  const events = (await a.call("ops", "GET", `/api/messages/${t.id}/events`)).body.items as Array<{ action: string; revision: string | number; actor: string }>;
  const approvers = new Set(events.filter((e) => e.action === "approve" && Number(e.revision) === approved.revision).map((e) => e.actor));
  if (approvers.size < model.required || approvers.has(model.author)) fail(`the audit trail names approvers ${JSON.stringify([...approvers])} of revision ${approved.revision}`);
  const frozen = new Set(t.addresses.get(approved.revision));
  for (const to of reached) if (!frozen.has(to)) fail(`${to} received it but is not a recipient of revision ${approved.revision}`);
  // 2. Not before the hold had passed since the approval.
  for (const r of originals) if (Math.min(r.at, r.startedAt ?? r.at) < approved.notBefore) fail(`a copy began ${approved.notBefore - (r.startedAt ?? r.at)} ms before the hold ended`);
  // Each recipient once, but for transactions a crash cut (counted).
  if (copies - reached.size > dup) fail(`${copies} copies to ${reached.size} recipients with ${dup} possible duplicates counted`);
  if (model.state === "sent") {
    stats.sent++;
    if (reached.size !== frozen.size) fail(`sent, but ${reached.size} of ${frozen.size} recipients received it`);
    if (corrections.length > 0) fail(`never recalled, yet ${corrections.length} corrections went out`);
    return;
  }
  if (model.state !== "corrected") fail(`settled in ${model.state}`);
  const rec = t.recall!;
  // 3. After the recall's answer: nobody beyond its count, and no copy began but those in flight (one transaction per fan-out job; one more per crash).
  if (reached.size > rec.delivered) fail(`${reached.size} recipients received it, the recall counted ${rec.delivered} delivered`);
  if (w.crashes === 0 && reached.size !== rec.delivered) fail(`the recall counted ${rec.delivered} delivered, ${reached.size} received it`);
  const late = originals.filter((r) => r.at > rec.answeredAt);
  stats.lateCopies += late.length;
  // One fan-out job sends one transaction at a time; a crash (or a job BullMQ took for stalled) may run a second one alongside: as many as the sink ever saw open at once.
  const txs = a.sink.transactions.filter((x) => x.messageId === t.messageId);
  if (txs.length < reached.size) fail(`the sink shows ${txs.length} transactions for ${reached.size} recipients`);
  const inFlightAtMost = Math.max(1, mostAtOnce(txs));
  stats.mostAtOnce = Math.max(stats.mostAtOnce, inFlightAtMost);
  if (late.length > inFlightAtMost) fail(`${late.length} copies arrived after the recall's answer, at most ${inFlightAtMost} transaction(s) were ever open at once`, { late: late.map(brief), answeredAt: rec.answeredAt });
  for (const r of late) {
    const gap = (r.startedAt ?? r.at) - rec.answeredAt;
    stats.maxLateStartMs = Math.max(stats.maxLateStartMs ?? -Infinity, gap);
    if (gap > START_GRACE_MS) fail(`a copy's transaction began ${gap} ms after the recall was answered`, { late: late.map(brief), answeredAt: rec.answeredAt });
  }
  // 4. One threaded correction for each who received it, and nobody else.
  const corrected = corrections.flatMap((r) => r.to);
  const correctedSet = new Set(corrected);
  if (correctedSet.size !== reached.size || [...reached].some((x) => !correctedSet.has(x))) fail(`corrections went to ${correctedSet.size} recipients, ${reached.size} received the original`, { missing: [...reached].filter((x) => !correctedSet.has(x)), extra: [...correctedSet].filter((x) => !reached.has(x)) });
  if (corrected.length - correctedSet.size > dup) fail(`${corrected.length} corrections to ${correctedSet.size} recipients with ${dup} possible duplicates counted`);
  if (real.counts.corrected !== correctedSet.size && w.crashes === 0) fail(`counts.corrected ${real.counts.corrected}, ${correctedSet.size} recipients corrected`);
  if (real.counts.skipped !== model.recipients - rec.delivered && w.crashes === 0) fail(`counts.skipped ${real.counts.skipped}, expected ${model.recipients - rec.delivered}`);
  for (const c of corrections) {
    if (!String(c.mail.references ?? "").includes(t.messageId)) fail("a correction does not reference the original");
    if (c.mail.subject !== `Correction: ${approved.subject}`) fail(`a correction's subject is ${JSON.stringify(c.mail.subject)}`);
    if ((c.startedAt ?? c.at) < rec.requestedAt) fail("a correction began before the recall was asked for");
    // 7. A custom text only once someone other than the recaller approved it; nothing at all while it waited.
    const custom = (c.mail.text ?? "").includes(CUSTOM_TEXT);
    if (custom !== (model.correction?.status === "approved")) fail(`a correction ${custom ? "carries" : "lacks"} the custom text, the correction is ${model.correction?.status}`);
    if (model.correction?.custom && t.correctionDecidedAt !== undefined && (c.startedAt ?? c.at) < t.correctionDecidedAt) fail("a correction began before its text was decided on");
  }
  stats.corrected++;
  if (model.correction?.status === "approved") stats.customCorrections++;
}

const brief = (r: Received) => ({ to: r.to, at: r.at, startedAt: r.startedAt });

/** The most transactions open at one moment (from MAIL FROM to their end). */
function mostAtOnce(txs: SinkTransaction[]): number {
  const edges = txs.flatMap((x) => [[x.startedAt, 1] as const, [x.endedAt ?? x.bodyAt ?? Infinity, -1] as const]).sort((p, q) => p[0] - q[0] || p[1] - q[1]);
  let open = 0;
  let most = 0;
  for (const [, d] of edges) most = Math.max(most, (open += d));
  return most;
}

// ---------------------------------------------------------------------------------------------

it("agrees with the reference model under random commands by random actors, mid-send recalls included, and keeps the promises", { timeout: 240_000 }, async () => {
  // The model's roles are its own; they must be the users the service was given.
  for (const [k, p] of Object.entries(PEOPLE)) {
    expect(USERS[k as UserKey].email).toBe(p.email);
    expect([...USERS[k as UserKey].roles].sort()).toEqual([...p.roles].sort());
  }
  process.stdout.write(`model-based: seed ${SEED}${PATH ? `, path ${PATH}` : ""}, ${RUNS} runs (replay: MODEL_SEED=${SEED})\n`);
  let run = 0;
  const property = fc.asyncProperty(prelude, commands, finale, async (first, cmds, f) => {
    run++;
    stats.runs++;
    const w: World = { run, tracked: [], log: [], midSend: 0, crashes: 0 };
    for (const x of first) await perform(w, a, x);
    await fc.asyncModelRun(() => ({ model: w, real: a }), cmds);
    if (w.midSend === 0) await forceMidSendRecall(w, f);
    if (w.midSend === 0) disagree(w, "no recall landed during a fan-out, even in the final scenario", null, null);
    await settle(w);
    for (const t of w.tracked) await checkPromises(w, t);
    if (VERBOSE) process.stdout.write(`run ${run}:\n  ${w.log.join("\n  ")}\n  -> ${w.tracked.map((t) => `${t.id}: ${t.model.state}`).join(", ")}\n`);
  });
  const details = await fc.check(property, { seed: SEED, numRuns: RUNS, endOnFailure: true, ...(PATH ? { path: PATH } : {}) });
  if (details.failed) {
    process.stdout.write(`model-based: FAILED, replay with MODEL_SEED=${details.seed} MODEL_PATH=${details.counterexamplePath}\n`);
    throw new Error(fc.defaultReportMessage(details) ?? "the property failed", { cause: details.errorInstance });
  }
  expect(stats.midSend).toBeGreaterThanOrEqual(RUNS);
});
