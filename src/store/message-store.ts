/**
 * The message store: every read and every state change of a message. State changes are Lua
 * compare-and-set scripts (store/lua/) checked against the lifecycle table, each appending its
 * audit entry in the same atomic step.
 */
import type { Redis } from "ioredis";
import type { Clock } from "../domain/clock.js";
import { NEW, STATES, type Action, type FromState, type State } from "../domain/lifecycle.js";
import { AIRLOCK_ACTOR, type CorrectionStatus, type DeliveryStatus, type Message, type ListedMessage, type PurgeStatus, type RecipientState, type WavePhase, type WaveProgress } from "../domain/message.js";
import { MAX_EVIDENCE, type SignalAnswer, type SignalEvidence, type SignalKind, type SignalSink, type SignalThresholds } from "../waves/signals.js";
import type { ApprovalLadder } from "../domain/policies.js";
import type { OriginalFields } from "../mail/compose.js";
import { CORRECTION_DUPLICATE_PREFIX, keys } from "./keys.js";
import type { BulkPace } from "./bulk-pace.js";
import { RecipientFreeze, type Frozen } from "./recipient-freeze.js";
import { registerScripts, type ReplicaAck, type ScriptName, type ScriptRunner } from "./scripts.js";
import type { Answer } from "./script-answers.js";

export const MAX_RECIPIENTS = 1_000_000;

/**
 * What a draft holds: the mail's own fields (as mail/compose.ts builds them) and who it goes to,
 * none of them checked for completeness yet. Dates in epoch ms.
 */
export interface DraftFields extends OriginalFields {
  audience: { lists: string[]; addresses: string[] };
  author: string;
  holdSeconds: number;
  sendAt: number | null;
}

/** What a submit stores: a complete message, its digest as built at submit, and when its approval request expires. */
export interface NewMessageFields extends DraftFields {
  digest: string;
  expiresAt: number;
  /** A staged send's seed audience ("" for none): its members among the recipients go first. */
  seedAudience?: string;
}

export interface FanoutOutcome {
  /** The recipient's index in the frozen set, as the claim answered it. */
  index: number;
  address: string;
  outcome: "s" | "f" | "t" | "a";
  reply: string;
}

export type FanoutKind = "original" | "correction";

/** A purge's answer for one recipient, as purge.lua records it: p purged, n not found, f failed (may be retried), F failed for good. */
export interface PurgeOutcome {
  index: number;
  address: string;
  outcome: "p" | "n" | "f" | "F";
  reason: string;
}

/** What a person decided about one approval (service/message-service.ts, from domain/policies.ts). */
export interface ApprovalDecision {
  revision: number;
  /** How many approvals the decision was made on: the script refuses (`stale_read`) if that changed. */
  seenApprovals: number;
  to: State;
  releaseAt: number | null;
  comment: string;
  /** The revision's digest the approver saw; the script refuses (`stale_digest`) if it is not the stored one. */
  digest: string;
}

/** The `correction` field as recall.lua and correction.lua write it. */
interface StoredCorrection {
  status: CorrectionStatus;
  text: string;
  required: number;
  approvals: Array<{ by: string; at: number; comment?: string; digest: string }> | Record<string, never>;
  digest: string;
  proposedBy: string;
  rejection?: { by: string; at: number; reason: string };
}

const iso = (ms: string | undefined) => (ms ? new Date(Number(ms)).toISOString() : null);
const int = (v: string | undefined) => (v ? Number(v) : 0);

/**
 * An edit that keeps its lists (each still the version frozen before): its recipients are kept, and
 * only the explicit addresses it adds or drops are applied to them, in the submit script (issue 18:
 * an edit of a million-recipient message that changes one address copies nothing).
 */
export interface KeptRecipients {
  keep: true;
  versions: number[];
  /** Explicit addresses the edit adds, and those it no longer names (kept when a list has them). */
  added?: string[];
  removed?: string[];
}

/** Whether a submit stages the send (store/lua/submit.lua decides with the count it freezes). */
export interface StagingChoice {
  /** The author's choice: "on", "off" (admins only: the service checks), or "" for the policy. */
  wanted: "on" | "off" | "";
  /** WAVES_THRESHOLD: the audience size from which the policy stages a send (0: never). */
  from: number;
  /** The digest of the message as a staged send (mail/compose.ts composeStaged). */
  stagedDigest: string;
}

/** The phase a continue was issued from (store/lua/waves.lua refuses it from another). */
export type ContinuePhase = "seed" | "canary" | "wait" | "rest";

/** The answer of a wave change (waves.lua begin and rest): a state and follow-ups, or a refusal. */
export type WaveAnswer = Exclude<Answer<"waves">, { counted: boolean }>;
function waveAnswer(a: Answer<"waves">): WaveAnswer {
  if ("counted" in a) throw new Error("waves.lua answered a signal's answer to a wave change");
  return a;
}

export class MessageStore implements SignalSink {
  private readonly scripts: ScriptRunner;

  constructor(
    private readonly redis: Redis,
    private readonly clock: Clock,
    /** REDIS_MIN_REPLICAS_ACK: which answers wait for replicas (store/scripts.ts). Default none. */
    replication?: ReplicaAck,
    /** Bulk work (the freeze's slices) gives way to running sends: store/bulk-pace.ts. Default: never. */
    pace?: BulkPace,
  ) {
    this.scripts = registerScripts(redis, replication);
    this.freeze = new RecipientFreeze(redis, pace);
  }

  /** The freeze of a submit's recipients, in slices (store/recipient-freeze.ts). */
  readonly freeze: RecipientFreeze;

  /** The KEYS every message script gets first (store/lua/prologue.lua, store/lua-lifecycle.ts). */
  private messageKeys(id: string): string[] {
    return [keys.message(id), keys.audit(id), keys.auditAll(), keys.auditHead(), ...STATES.map(keys.messagesInState), keys.purgesRunning()];
  }

  private fanoutKeys(id: string): string[] {
    return [
      ...this.messageKeys(id),
      keys.recipients(id),
      keys.delivery(id),
      keys.correction(id),
      keys.possibleDuplicates(id),
      keys.failures(id),
      keys.rateBucket(),
      keys.purgeStates(id),
      keys.purgeFailures(id),
      keys.purgeRate(),
      keys.waves(id),
      keys.signals(id),
      keys.signalKeys(id),
      keys.wavesPlan(id),
    ];
  }

  /** `now` is passed when the caller derived other times from the same instant (submit's expiresAt, approve's releaseAt). */
  private run<N extends ScriptName>(name: N, keyList: string[], actor: string, args: Array<string | number>, now = this.clock.now()): Promise<Answer<N>> {
    return this.scripts.run(name, keyList, [keys.events(), now, actor, ...args]);
  }

  async nextId(): Promise<string> {
    return String(await this.redis.incr(keys.messageSeq()));
  }

  /**
   * Creates (mode create) or re-submits as a new revision (mode edit), with the recipients `frozen`
   * by store/recipient-freeze.ts (or kept, for an edit with the same audience), frozen here when not given.
   * `now` is the instant `f.expiresAt` was computed from, so the TTL is exact. `seenRevision`
   * (edit): the revision the caller read; a newer one is a `stale_revision` refusal. An edit when
   * `maxRevisions` snapshots are kept already is a `revision_limit` refusal.
   */
  async submit(
    mode: "create" | "edit" | "draft",
    id: string,
    actor: string,
    f: NewMessageFields,
    ladder: ApprovalLadder,
    now: number,
    opts: { seenRevision?: number; maxRevisions: number; frozen?: Frozen | KeptRecipients; waves?: StagingChoice },
  ): Promise<Answer<"submit">> {
    const { seenRevision } = opts;
    if (!opts.frozen) {
      // Frozen here, once (the service freezes itself, to copy again when a list changes meanwhile).
      const frozen = await this.freeze.freeze(id, f.audience.lists, f.audience.addresses);
      try {
        return await this.submit(mode, id, actor, f, ladder, now, { ...opts, frozen });
      } finally {
        await this.freeze.discard(frozen.scratch);
      }
    }
    const frozen = opts.frozen;
    const keep = "keep" in frozen;
    const fields = {
      ...f,
      html: f.html ?? "",
      audience: JSON.stringify(f.audience),
      sendAt: f.sendAt === null ? "" : String(f.sendAt),
      expiresAt: String(f.expiresAt),
      holdSeconds: String(f.holdSeconds),
    };
    return this.run(
      "submit",
      [...this.messageKeys(id), keys.recipients(id), keep ? keys.recipients(id) : frozen.scratch, keys.revisions(id), keys.messagesByTime(), keys.audiences(), ...f.audience.lists.map(keys.audience)],
      actor,
      [
        mode,
        id,
        JSON.stringify(fields),
        JSON.stringify(ladder),
        MAX_RECIPIENTS,
        seenRevision === undefined ? "" : String(seenRevision),
        JSON.stringify(f.audience.lists),
        opts.maxRevisions,
        JSON.stringify(frozen.versions),
        keep ? f.audience.addresses.length : frozen.explicit,
        keep ? "keep" : "",
        opts.waves?.wanted ?? "",
        opts.waves?.from ?? 0,
        opts.waves?.stagedDigest ?? "",
        keep ? JSON.stringify(frozen.added ?? []) : "[]",
        keep ? JSON.stringify(frozen.removed ?? []) : "[]",
      ],
      now,
    );
  }

  /** Creates or replaces a draft (store/lua/draft.lua): no freeze, nobody asked; `seenRevision` guards a stale editor. */
  saveDraft(id: string, actor: string, f: DraftFields, seenRevision?: number): Promise<Answer<"draft">> {
    const fields = { ...f, html: f.html ?? "", audience: JSON.stringify(f.audience), sendAt: f.sendAt === null ? "" : String(f.sendAt), holdSeconds: String(f.holdSeconds) };
    return this.run("draft", [...this.messageKeys(id), keys.revisions(id)], actor, ["save", id, JSON.stringify(fields), seenRevision === undefined ? "" : String(seenRevision)]);
  }

  /** Deletes a draft (its audit trail stays). */
  discardDraft(id: string, actor: string, seenRevision?: number): Promise<Answer<"draft">> {
    return this.run("draft", [...this.messageKeys(id), keys.revisions(id)], actor, ["discard", id, "", seenRevision === undefined ? "" : String(seenRevision)]);
  }

  /** `now` is the instant the decision's releaseAt was computed from. */
  approve(id: string, actor: string, d: ApprovalDecision, now: number): Promise<Answer<"approve">> {
    return this.run("approve", this.messageKeys(id), actor, [String(d.revision), d.seenApprovals, d.to, d.releaseAt === null ? "" : d.releaseAt, d.comment, d.digest], now);
  }

  /** The plain transitions, each with one outcome in the lifecycle table. */
  move(action: Extract<Action, "reject" | "withdraw" | "expire" | "release">, id: string, actor: string, opts: { revision?: number; detail?: object } = {}): Promise<Answer<"move">> {
    return this.run("move", this.messageKeys(id), actor, [action, opts.revision === undefined ? "" : String(opts.revision), JSON.stringify(opts.detail ?? {})]);
  }

  /** Holds (pause) or lets go on (resume) the running fan-out; the state stays. */
  pauseOrResume(action: "pause" | "resume", id: string, actor: string, reason = ""): Promise<Answer<"pause">> {
    return this.run("pause", this.messageKeys(id), actor, [action, reason]);
  }

  /**
   * `correction`: the custom text ("" for the standard correction), the approvals it needs (0: it
   * goes at once) and the digest of the correction built with it.
   */
  recall(id: string, actor: string, reason: string, correction: { text: string; required: number }, purge: { correctionWaitMs: number } | null = null): Promise<Answer<"recall">> {
    return this.run("recall", this.messageKeys(id), actor, [reason, correction.text, correction.required, purge ? String(purge.correctionWaitMs) : ""]);
  }

  /** The digest of a custom correction text awaiting approval, built after the recall (correction-digest.lua). */
  setCorrectionDigest(id: string, actor: string, digest: string): Promise<Answer<"correctionDigest">> {
    return this.run("correctionDigest", this.messageKeys(id), actor, [digest]);
  }

  /** A decision on a custom correction text awaiting approval (store/lua/correction.lua). */
  decideCorrection(
    action: Extract<Action, "approveCorrection" | "rejectCorrection" | "standardCorrection">,
    id: string,
    actor: string,
    seen: { approvals: number; digest: string },
    detail: { comment?: string; reason?: string } = {},
  ): Promise<Answer<"correction">> {
    return this.run("correction", this.messageKeys(id), actor, [action, seen.approvals, seen.digest, JSON.stringify(detail)]);
  }

  /**
   * An audit entry that changes no state (a notification sent, a reminder due). With `once`, the
   * entry is written only the first time for that name (per message), and answers `already` after;
   * with `revision`, only while the message is still at that revision.
   */
  note(id: string, actor: string, action: string, detail: object, opts: { once?: string; revision?: number } = {}): Promise<Answer<"note">> {
    return this.run("note", this.messageKeys(id), actor, [action, JSON.stringify(detail), opts.once ? `once:${opts.once}` : "", opts.revision === undefined ? "" : String(opts.revision)]);
  }

  /** Claims indexes first..last (one transaction) of the batch that ends at `batchLast`; `wave`: a staged send's job's wave. */
  claim(id: string, kind: FanoutKind, first: number, last: number, rate: number, burst: number, batchLast: number, wave?: number): Promise<Answer<"claim">> {
    return this.run("claim", this.fanoutKeys(id), "worker", [kind, first, last, rate, burst, batchLast, wave === undefined ? "" : wave]);
  }

  /**
   * Sent as one outcome letter per index from the transaction's lowest: a transaction that went
   * through costs Redis a few bytes, not an address per recipient. Other outcomes also carry the
   * address (duplicates, failures) and the SMTP reply.
   */
  settle(id: string, kind: FanoutKind, outcomes: FanoutOutcome[]): Promise<Answer<"settle">> {
    let base = Infinity;
    let top = -Infinity;
    for (const o of outcomes) {
      base = Math.min(base, o.index);
      top = Math.max(top, o.index);
    }
    const codes = Buffer.alloc(top - base + 1, ".");
    const details: Array<string | number> = [];
    for (const o of outcomes) {
      codes[o.index - base] = o.outcome.charCodeAt(0);
      if (o.outcome !== "s") details.push(o.index, o.address, o.reply);
    }
    return this.run("settle", this.fanoutKeys(id), "worker", [kind, base, codes.toString("latin1"), ...details]);
  }

  /**
   * The next recipients of indexes from..last a purge job takes (store/lua/purge.lua): at most
   * `max`, those to be tried again too when `again`, after the shared purge-rate bucket allowed them.
   */
  purgeClaim(id: string, from: number, last: number, max: number, rate: number, again: boolean): Promise<Answer<"purge">> {
    return this.run("purge", this.fanoutKeys(id), "worker", ["purge", "claim", from, last, max, rate, rate, again ? "1" : "0"]);
  }

  /** What each purge answered; `final` once not found and failed are no longer tried again. */
  purgeSettle(id: string, final: boolean, outcomes: PurgeOutcome[]): Promise<Answer<"purge">> {
    const args: Array<string | number> = ["purge", "settle", final ? "1" : "0"];
    for (const o of outcomes) args.push(o.index, o.outcome, o.address, o.reason);
    return this.run("purge", this.fanoutKeys(id), "worker", args);
  }

  /** A staged send's plan is written (writeWavePlan): its first wave opens (store/lua/waves.lua). */
  async wavesBegin(id: string, plan: { seed: number; canary: number; canarySeed: string; waitMs: number; thresholds: SignalThresholds }): Promise<WaveAnswer> {
    return waveAnswer(await this.run("waves", this.fanoutKeys(id), AIRLOCK_ACTOR, ["original", "begin", plan.seed, plan.canary, plan.canarySeed, Math.round(plan.waitMs), JSON.stringify(plan.thresholds)]));
  }

  /** The rest of a staged send goes: after the wait (`timer`), or now because ops continue it. */
  async wavesRest(id: string, actor: string, how: "timer" | "continue", from?: ContinuePhase): Promise<WaveAnswer> {
    return waveAnswer(await this.run("waves", this.fanoutKeys(id), actor, ["original", "rest", how, from ?? ""]));
  }

  /** SignalSink: one bounce, reply or report of a staged send (store/lua/waves.lua signal). */
  async record(id: string, kind: Exclude<SignalKind, "failure">, evidence: Omit<SignalEvidence, "kind" | "at">, dedupe: string): Promise<SignalAnswer> {
    const a = await this.run("waves", this.fanoutKeys(id), AIRLOCK_ACTOR, ["original", "signal", kind, JSON.stringify(evidence), dedupe]);
    if (!a.ok) return { ok: false, err: a.err === "not_found" ? "not_found" : "not_sent" };
    if (!("counted" in a)) throw new Error(`signal of message ${id}: unexpected answer`);
    return { ok: true, counted: a.counted, halted: a.halted };
  }

  /** A staged send's signal evidence, newest first (at most MAX_EVIDENCE). */
  async signalEvidence(id: string): Promise<SignalEvidence[]> {
    const raw = await this.redis.lrange(keys.signals(id), 0, MAX_EVIDENCE - 1);
    return raw.map((r) => {
      const e = JSON.parse(r) as Omit<SignalEvidence, "at"> & { at: number; index?: number };
      return { ...e, at: new Date(e.at).toISOString() };
    });
  }

  /**
   * Writes a staged send's plan: the wave byte of each early recipient (1 seed cohort, 2 canary),
   * 64 kB of the string per SETRANGE (a short command each), into a key of its own (after dropping
   * any earlier attempt's), which waves.lua begin renames over the message's waves only while the
   * plan is not begun: a planner run twice never rewrites the waves of a send under way.
   */
  async writeWavePlan(id: string, seed: Uint32Array, canary: Uint32Array): Promise<void> {
    const key = keys.wavesPlan(id);
    await this.redis.unlink(key);
    const WINDOW = 65_536;
    const marks = new Map<number, Buffer>();
    const mark = (indexes: Uint32Array, wave: number) => {
      for (const i of indexes) {
        const w = Math.floor(i / WINDOW);
        let b = marks.get(w);
        if (!b) marks.set(w, (b = Buffer.alloc(WINDOW)));
        b[i % WINDOW] = wave;
      }
    };
    mark(canary, 2);
    mark(seed, 1);
    const pipeline = this.redis.pipeline();
    for (const [w, b] of [...marks].sort((a, b) => a[0] - b[0])) {
      // Trimmed of its trailing zero bytes: the string is as long as its last early recipient.
      let end = b.length;
      while (end > 0 && b[end - 1] === 0) end--;
      pipeline.setrange(key, w * WINDOW, b.subarray(0, end));
    }
    // A planner that dies before begin leaves nothing for long (begin renames it and removes the expiry).
    pipeline.pexpire(key, 3600_000);
    await pipeline.exec();
  }

  /** The indexes of `addresses` in the frozen set (those in it), for the seed cohort. */
  async indexesOf(id: string, addresses: readonly string[]): Promise<number[]> {
    const out: number[] = [];
    for (let i = 0; i < addresses.length; i += 1000) {
      const pipeline = this.redis.pipeline();
      for (const a of addresses.slice(i, i + 1000)) pipeline.zrank(keys.recipients(id), a);
      for (const [err, rank] of (await pipeline.exec()) ?? []) if (!err && typeof rank === "number") out.push(rank);
    }
    return out;
  }

  /** Frozen recipients from index `from`, `count` of them (a slice of the frozen set, in index order). */
  recipientSlice(id: string, from: number, count: number): Promise<string[]> {
    return this.redis.zrange(keys.recipients(id), String(from), String(from + count - 1));
  }

  /**
   * The version of each list the message's recipients were frozen from (submit.lua), or null for a
   * message submitted before it was recorded (its next edit then freezes again).
   */
  async frozenVersions(id: string): Promise<Map<string, number> | null> {
    const raw = await this.redis.hget(keys.message(id), "frozenVersions");
    return raw === null ? null : new Map(Object.entries(JSON.parse(raw) as Record<string, number>));
  }

  /** The original's Message-ID header value (with its angle brackets), or null for an unknown message. */
  async messageIdOf(id: string): Promise<string | null> {
    return this.redis.hget(keys.message(id), "messageId");
  }

  /** Whether ops hold this message's fan-out (the `paused` field; pause.lua sets it, resume and every state change delete it). */
  async isPaused(id: string): Promise<boolean> {
    return (await this.redis.hexists(keys.message(id), "paused")) === 1;
  }

  /**
   * The fields a message's build depends on (revision, digest, release time, Message-ID, approvals,
   * correction), as one string: a worker's MIME cache key. One HMGET instead of reading the whole
   * message (bodies included) for every batch job. Null for an unknown message.
   */
  async buildStamp(id: string): Promise<string | null> {
    const f = await this.redis.hmget(keys.message(id), "revision", "digest", "releaseAt", "messageId", "approvals", "correction");
    return f[0] ? JSON.stringify(f) : null;
  }

  async get(id: string): Promise<Message | null> {
    if (!/^[1-9][0-9]{0,15}$/.test(id)) return null;
    const h = await this.redis.hgetall(keys.message(id));
    return h.id ? toMessage(h) : null;
  }

  /**
   * Newest first, without their bodies: a page of 200 messages of a few MB each would otherwise be
   * read into memory whole (one request could hold hundreds of MB). The cursor is an offset, opaque
   * to clients.
   */
  async list(opts: { state?: State; limit: number; cursor?: string }): Promise<{ items: ListedMessage[]; nextCursor: string | null }> {
    const key = opts.state ? keys.messagesInState(opts.state) : keys.messagesByTime();
    const offset = opts.cursor ? Number(opts.cursor) : 0;
    const ids = await this.redis.zrevrange(key, offset, offset + opts.limit - 1);
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hmget(keys.message(id), ...SUMMARY_FIELDS);
    const rows = ((await pipe.exec()) ?? []) as Array<[Error | null, Array<string | null>]>;
    const items: ListedMessage[] = [];
    for (const [err, values] of rows) {
      if (err) throw err;
      const h: Record<string, string> = {};
      SUMMARY_FIELDS.forEach((f, i) => {
        if (values[i] !== null && values[i] !== undefined) h[f] = values[i]!;
      });
      if (!h.id) continue; // removed meanwhile (a discarded draft)
      const { text: _text, html: _html, markdown: _markdown, ...summary } = toMessage(h);
      items.push(summary);
    }
    return { items, nextCursor: ids.length === opts.limit ? String(offset + ids.length) : null };
  }

  /**
   * Revision snapshots newest first, `limit` at most, older than revision `before` when given (a
   * page: each snapshot holds the bodies, up to a few MB). Numbers may skip (draft saves keep no
   * snapshot); MAX_REVISIONS bounds how many there are.
   */
  async revisionPage(id: string, opts: { before?: number; limit: number }): Promise<{ items: Array<Record<string, unknown>>; nextCursor: string | null }> {
    const numbers = (await this.redis.hkeys(keys.revisions(id)))
      .map(Number)
      .filter((n) => Number.isInteger(n) && (opts.before === undefined || n < opts.before))
      .sort((a, b) => b - a);
    const page = numbers.slice(0, opts.limit);
    if (page.length === 0) return { items: [], nextCursor: null };
    const raw = await this.redis.hmget(keys.revisions(id), ...page.map(String));
    const items = raw.filter((r): r is string => r !== null).map((r) => JSON.parse(r) as Record<string, unknown>);
    return { items, nextCursor: numbers.length > page.length ? String(page[page.length - 1]) : null };
  }

  async revisionSnapshot(id: string, revision: number): Promise<Record<string, unknown> | null> {
    const raw = await this.redis.hget(keys.revisions(id), String(revision));
    return raw ? (JSON.parse(raw) as Record<string, unknown>) : null;
  }

  /**
   * One page of per-recipient delivery state, by index in the frozen set. With a status filter a
   * page examines at most `scan` recipients, so a request stays cheap on a million recipients.
   */
  async recipients(message: Message, opts: { status?: DeliveryStatus; cursor: number; limit: number }): Promise<{ items: RecipientState[]; nextCursor: string | null }> {
    const scan = opts.status ? Math.max(opts.limit, 5000) : opts.limit;
    const addresses = await this.redis.zrange(keys.recipients(message.id), String(opts.cursor), String(opts.cursor + scan - 1));
    if (addresses.length === 0) return { items: [], nextCursor: null };
    const pipe = this.redis.pipeline();
    const range = [String(opts.cursor), String(opts.cursor + addresses.length - 1)] as const;
    pipe.getrangeBuffer(keys.delivery(message.id), ...range);
    pipe.getrangeBuffer(keys.correction(message.id), ...range);
    pipe.hmget(keys.failures(message.id), ...addresses);
    pipe.smismember(keys.possibleDuplicates(message.id), ...addresses);
    pipe.smismember(keys.possibleDuplicates(message.id), ...addresses.map((a) => CORRECTION_DUPLICATE_PREFIX + a));
    pipe.getrangeBuffer(keys.purgeStates(message.id), ...range);
    pipe.hmget(keys.purgeFailures(message.id), ...addresses);
    const [[, deliveryBytes], [, correctionBytes], [, failures], [, dups], [, correctionDups], [, purgeBytes], [, purgeReasons]] = (await pipe.exec()) as Array<[Error | null, unknown]> as [
      [null, Buffer],
      [null, Buffer],
      [null, Array<string | null>],
      [null, number[]],
      [null, number[]],
      [null, Buffer],
      [null, Array<string | null>],
    ];
    // One byte per recipient from the cursor on; a zero byte or past the end: nothing recorded.
    const letter = (bytes: Buffer, i: number) => (i < bytes.length && bytes[i] !== 0 ? String.fromCharCode(bytes[i]!) : null);
    const delivery = addresses.map((_, i) => letter(deliveryBytes, i));
    const correction = addresses.map((_, i) => letter(correctionBytes, i));
    const stopped = message.recall !== null;
    const items: RecipientState[] = [];
    let consumed = 0;
    for (let i = 0; i < addresses.length; i++) {
      consumed = i + 1;
      const status = deliveryStatus(delivery[i] ?? null, stopped);
      if (opts.status && status !== opts.status) continue;
      const c = correction[i];
      items.push({
        email: addresses[i]!,
        status,
        reply: failures[i] ?? null,
        correction: c === "s" ? "sent" : c === "f" ? "failed" : c === "i" ? "queued" : null,
        possibleDuplicate: dups[i] === 1,
        correctionPossibleDuplicate: correctionDups[i] === 1,
        purge: purgeStatus(letter(purgeBytes, i)),
        purgeReason: purgeReasons[i] ?? null,
      });
      if (items.length === opts.limit) break;
    }
    const next = opts.cursor + consumed;
    return { items, nextCursor: consumed === addresses.length && addresses.length < scan ? null : String(next) };
  }

  async events(id: string): Promise<Array<Record<string, string>>> {
    const entries = await this.redis.xrange(keys.audit(id), "-", "+");
    return entries.map(([entryId, fields]) => {
      const o: Record<string, string> = { entryId };
      for (let i = 0; i + 1 < fields.length; i += 2) o[fields[i]!] = fields[i + 1]!;
      return o;
    });
  }
}

function deliveryStatus(raw: string | null, stopped: boolean): DeliveryStatus {
  switch (raw) {
    case "s":
      return "sent";
    case "f":
      return "failed";
    case "k":
      return "skipped";
    case "i":
      return "queued"; // inside an SMTP transaction right now
    default:
      return stopped ? "skipped" : "queued";
  }
}

/** The message hash fields toMessage reads, but for the bodies (text, html, markdown). */
const SUMMARY_FIELDS = [
  "id", "revision", "state", "subject", "template", "from", "audience", "toHeader", "recipientCount", "author", "approvals", "digest",
  "requiredApprovals", "holdSeconds", "sendAt", "releaseAt", "expiresAt", "createdAt", "submittedAt", "updatedAt", "messageId",
  "releasedAt", "queued", "inflight", "sent", "failed", "skipped", "corrected", "correctionFailed", "possibleDuplicates",
  "recall", "rejection", "paused", "correction",
  "purgeStartedAt", "purgeEndedAt", "purgeTotal", "purged", "purgeNotFound", "purgeFailed",
  "staged", "seedAudience", "waveOpen", "wave1Size", "wave2Size", "wave3Size", "canarySeed", "wave1At", "wave2At", "wave3At", "waveWaitUntil",
  "waveHanded", "signalFailures", "signalBounces", "signalReplies", "signalAutoReplies", "signalReports", "signalThresholds", "haltedBy",
] as const;

function toMessage(h: Record<string, string>): Message {
  const recall = h.recall ? (JSON.parse(h.recall) as { by: string; at: number; reason: string; correctionText: string; deliveredAtRecall: number }) : null;
  const rejection = h.rejection ? (JSON.parse(h.rejection) as { by: string; at: number; reason: string }) : null;
  const paused = h.paused ? (JSON.parse(h.paused) as { by: string; at: number; reason: string }) : null;
  const correction = h.correction ? (JSON.parse(h.correction) as StoredCorrection) : null;
  const approvals = JSON.parse(h.approvals ?? "[]") as Array<{ by: string; at: number; comment: string; digest?: string }>;
  return {
    id: h.id!,
    revision: int(h.revision),
    state: h.state as State,
    subject: h.subject ?? "",
    text: h.text ?? "",
    html: h.html ? h.html : null,
    markdown: h.markdown ?? "",
    template: h.template ?? "",
    from: h.from ?? "",
    audience: JSON.parse(h.audience ?? '{"lists":[],"addresses":[]}') as Message["audience"],
    toHeader: h.toHeader ?? "",
    recipientCount: int(h.recipientCount),
    author: h.author ?? "",
    approvals: approvals.map((a) => ({ by: a.by, at: new Date(a.at).toISOString(), comment: a.comment || null, digest: a.digest ?? null })),
    digest: h.digest ?? "",
    requiredApprovals: int(h.requiredApprovals),
    holdSeconds: int(h.holdSeconds),
    sendAt: iso(h.sendAt),
    releaseAt: iso(h.releaseAt),
    expiresAt: iso(h.expiresAt),
    createdAt: iso(h.createdAt)!,
    submittedAt: iso(h.submittedAt) ?? iso(h.createdAt)!,
    updatedAt: iso(h.updatedAt)!,
    messageId: h.messageId ?? "",
    counts: {
      queued: h.releasedAt ? int(h.queued) + int(h.inflight) : h.recall ? 0 : int(h.recipientCount),
      inFlight: int(h.inflight),
      sent: int(h.sent),
      failed: int(h.failed),
      skipped: int(h.skipped),
      corrected: int(h.corrected),
      correctionFailed: int(h.correctionFailed),
    },
    possibleDuplicates: int(h.possibleDuplicates),
    recall: recall && {
      by: recall.by,
      at: new Date(recall.at).toISOString(),
      reason: recall.reason,
      correctionText: recall.correctionText || null,
      deliveredAtRecall: recall.deliveredAtRecall,
    },
    rejection: rejection && { by: rejection.by, at: new Date(rejection.at).toISOString(), reason: rejection.reason },
    paused: paused && { by: paused.by, at: new Date(paused.at).toISOString(), reason: paused.reason },
    correction: correction && {
      status: correction.status,
      text: correction.text || null,
      required: correction.required,
      // Lua's cjson writes an empty list as {}.
      approvals: (Array.isArray(correction.approvals) ? correction.approvals : []).map((a) => ({ by: a.by, at: new Date(a.at).toISOString(), comment: a.comment || null, digest: a.digest })),
      digest: correction.digest,
      proposedBy: correction.proposedBy,
      rejection: correction.rejection ? { by: correction.rejection.by, at: new Date(correction.rejection.at).toISOString(), reason: correction.rejection.reason } : null,
    },
    purge: h.purgeStartedAt
      ? {
          startedAt: iso(h.purgeStartedAt)!,
          endedAt: iso(h.purgeEndedAt),
          total: int(h.purgeTotal),
          purged: int(h.purged),
          notFound: int(h.purgeNotFound),
          failed: int(h.purgeFailed),
          pending: Math.max(0, int(h.purgeTotal) - int(h.purged) - int(h.purgeNotFound) - int(h.purgeFailed)),
        }
      : null,
    waves: h.staged === "1" ? waveProgress(h) : null,
  };
}

/** A staged send's waves and signals as the API shows them (store/lua/fanout-prologue.lua keeps the fields). */
function waveProgress(h: Record<string, string>): WaveProgress {
  const open = h.waveOpen === undefined ? null : Number(h.waveOpen);
  const phase: WavePhase =
    open === null ? "approval" : open === 0 ? "planning" : open === 1 ? "seed" : open === 2 ? (h.waveWaitUntil ? "wait" : "canary") : "rest";
  const thresholds = h.signalThresholds ? (JSON.parse(h.signalThresholds) as SignalThresholds) : null;
  const halted = h.haltedBy ? (JSON.parse(h.haltedBy) as { kind: "failure" | "bounce" | "reply" | "report"; at: number; count: number }) : null;
  return {
    phase,
    seedAudience: h.seedAudience || null,
    seed: int(h.wave1Size),
    canary: int(h.wave2Size),
    rest: int(h.wave3Size),
    canarySeed: h.canarySeed ?? null,
    startedAt: { seed: iso(h.wave1At), canary: iso(h.wave2At), rest: iso(h.wave3At) },
    waitUntil: phase === "wait" ? iso(h.waveWaitUntil) : null,
    handed: int(h.waveHanded),
    signals: { failures: int(h.signalFailures), bounces: int(h.signalBounces), replies: int(h.signalReplies), autoReplies: int(h.signalAutoReplies), reports: int(h.signalReports) },
    thresholds: thresholds ?? { replies: 0, reports: 0, bouncePercent: 0, failurePercent: 0 },
    haltedBy: halted && { kind: halted.kind, at: new Date(halted.at).toISOString(), count: halted.count },
  };
}

/** A purge state byte (store/lua/purge.lua) as the API names it. */
function purgeStatus(raw: string | null): PurgeStatus | null {
  switch (raw) {
    case null:
      return null;
    case "p":
      return "purged";
    case "N":
      return "not_found";
    case "F":
      return "failed";
    default:
      return "pending"; // i, n, f: being purged, or to be tried again
  }
}

/** Reads the sweep needs, kept apart from the API's Message shape. */
export class SweepReads {
  constructor(private readonly redis: Redis) {}

  /** The ids of the messages in these states (`new` is never stored: it names no message). */
  async idsInStates(states: readonly FromState[]): Promise<string[]> {
    const stored = states.filter((s): s is State => s !== NEW);
    return (await Promise.all(stored.map((s) => this.redis.zrange(keys.messagesInState(s), "0", "-1")))).flat();
  }

  /** The purges started and not ended: when each last did something, and the size of its frozen set. */
  async runningPurges(): Promise<Array<{ id: string; activityAt: number; recipients: number }>> {
    const ids = await this.redis.zrange(keys.purgesRunning(), "0", "-1");
    const out = [];
    for (const id of ids) {
      const [activity, recipients] = await this.redis.hmget(keys.message(id), "purgeActivityAt", "recipientCount");
      out.push({ id, activityAt: Number(activity ?? 0), recipients: Number(recipients ?? 0) });
    }
    return out;
  }

  /** Epoch ms of the last fan-out progress (or release), and whether the correction has started. */
  async activity(id: string): Promise<{ lastActivity: number; correctionStarted: boolean }> {
    const [progress, released, started, recalled] = await this.redis.hmget(keys.message(id), "progressPublishedAt", "releasedAt", "correctionStarted", "updatedAt");
    return { lastActivity: Math.max(Number(progress ?? 0), Number(released ?? 0), Number(recalled ?? 0)), correctionStarted: started === "1" };
  }
}
