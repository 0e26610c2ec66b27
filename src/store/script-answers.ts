/**
 * What each Lua script answers, as zod schemas: a script's JSON is parsed, never cast. A script
 * that answers something else is a defect and throws here. Follow-ups are what must happen after
 * a committed change (schedule a release, start a fan-out); the scripts name them, and one module
 * (service/follow-ups.ts) carries them out.
 */
import { z } from "zod";
import { NEW, STATES } from "../domain/lifecycle.js";

/** Lua's cjson encodes an empty table as `{}`: read it as the empty list it stands for. */
const luaList = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (v !== null && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 0 ? [] : v), z.array(item));

const state = z.enum(STATES);
const count = z.number().int().nonnegative();
const kind = z.enum(["original", "correction"]);
/** A staged send's wave (store/lua/fanout-prologue.lua): 1 seed cohort, 2 canary, 3 the rest. */
const wave = z.number().int().min(1).max(3);

export const followUpSchema = z.discriminatedUnion("do", [
  /** A delayed release job at `at` (epoch ms) for that revision. */
  z.object({ do: z.literal("scheduleRelease"), revision: count, at: count }),
  /** A delayed expiry job at `at` for that revision. */
  z.object({ do: z.literal("scheduleExpiry"), revision: count, at: count }),
  /** The batch jobs of a fan-out. `sinceRecallMs`: the correction starts this long after the recall (the recall-to-stop time). */
  z.object({ do: z.literal("startFanout"), kind, recipients: count, sinceRecallMs: count.optional(), revision: count.optional(), wave: wave.optional() }),
  /** Wake the fan-out's batch jobs that wait out a pause (of that wave, in a staged send). */
  z.object({ do: z.literal("wakeFanout"), kind, recipients: count, wave: wave.optional() }),
  /** A staged send was released: make its plan of waves (workers/wave-planner.ts), then begin. */
  z.object({ do: z.literal("planWaves"), recipients: count }),
  /** The end of a staged send's wait after the canary: a timer job at `at` opens the rest. */
  z.object({ do: z.literal("scheduleWave"), at: count }),
  /**
   * The purge jobs of a recalled original (store/lua/purge.lua), over the frozen set's `recipients`
   * indexes. `pass`: unset for the first (once per message); the sweep names a later one, which
   * takes again those not found or failed.
   */
  z.object({ do: z.literal("startPurge"), recipients: count, pass: z.string().regex(/^[a-z0-9]{1,40}$/).optional() }),
]);
export type FollowUp = z.infer<typeof followUpSchema>;
const followUps = luaList(followUpSchema);

export const REFUSALS = [
  "not_found",
  "conflict",
  "stale_revision",
  /** The message changed between the caller's read and the script (approve): read and decide again. */
  "stale_read",
  "not_due",
  "already",
  "already_paused",
  /** The correction is not waiting for a decision (already approved, rejected, standard, or none). */
  "not_pending",
  "not_paused",
  "unknown_audience",
  /** A list was replaced or deleted while the recipients were frozen (store/recipient-freeze.ts): freeze again. */
  "audience_changed",
  "no_recipients",
  "too_many_recipients",
  /** An edit past MAX_REVISIONS (count: the limit). */
  "revision_limit",
  /** A signal for a message that was never released. */
  "not_sent",
  /** A wave action on a message that is not a staged send. */
  "not_staged",
  /** The rest's timer while the send is halted: only ops' continue lets it go. */
  "halted",
  /** Continue while the plan of waves is being made. */
  "planning",
  /** Continue when every wave is open and nothing is halted. */
  "not_halted",
  /** A continue from a phase the send has left (a retried or doubled continue): nothing changed. */
  "moved_on",
  /** waves.lua begin found no plan for early recipients (a planner run twice): plan again. */
  "plan_missing",
  /** A submit the count stages, without the staged mails' digest (the lists grew after the caller looked): build them, submit again. */
  "staging_unbuilt",
] as const;
export type RefusalCode = (typeof REFUSALS)[number];

export const refusalSchema = z.object({
  ok: z.literal(false),
  err: z.enum(REFUSALS),
  state: state.optional(),
  revision: count.optional(),
  audience: z.string().optional(),
  count: count.optional(),
  followUps: followUps.optional(),
});
export type Refusal = z.infer<typeof refusalSchema>;

const orRefusal = <T extends z.ZodRawShape>(shape: T) => z.discriminatedUnion("ok", [z.object({ ok: z.literal(true), ...shape }), refusalSchema]);

export const ANSWERS = {
  submit: orRefusal({ id: z.string(), revision: count, state, recipientCount: count, requiredApprovals: count, followUps }),
  approve: orRefusal({ state, given: count, required: count, revision: count, followUps }),
  move: orRefusal({ state, recipientCount: count, followUps }),
  recall: orRefusal({ state, delivered: count, followUps }),
  pause: orRefusal({ state, followUps }),
  note: orRefusal({ state }),
  correctionDigest: orRefusal({ state }),
  /** `revision` 0: discarded. */
  draft: orRefusal({ id: z.string(), revision: count, state: z.union([state, z.literal(NEW)]), followUps }),
  correction: orRefusal({ state, status: z.enum(["standard", "pending", "approved", "declined"]), followUps }),
  claim: z.union([
    /**
     * `variants`, one letter per address, when the standard correction says whether the original
     * was removed from the mailbox: r (removed) or k (kept).
     */
    /** `next`: the index the next claim of the batch starts from (a staged send's early waves scan ahead). */
    z.object({
      claimed: z.literal(true),
      addresses: luaList(z.string()),
      indexes: luaList(count),
      next: count,
      variants: z.string().regex(/^[rk]*$/).optional(),
    }),
    /** A staged send whose plan of waves is not made yet: nothing may go (its waves' jobs come with the plan). */
    z.object({ held: z.literal(true) }),
    z.object({ stopped: z.literal(true), state, followUps }),
    /** Ops paused the fan-out: the batch waits (workers/run-workers.ts) and looks again later. */
    z.object({ paused: z.literal(true) }),
    /** The shared send-rate bucket is empty: try again in this many ms. */
    z.object({ wait: z.number().positive() }),
    /** The standard correction waits for purge answers (store/lua/claim.lua): the job looks again this many ms later. */
    z.object({ purgeWait: z.number().positive() }),
  ]),
  settle: z.object({ ok: z.literal(true), state, followUps }),
  waves: z.union([
    z.object({ ok: z.literal(true), state, followUps }),
    z.object({ ok: z.literal(true), counted: z.boolean(), halted: z.boolean() }),
    refusalSchema,
  ]),
  purge: z.union([
    /** `next`: the index the job's next claim starts from; `startedAt`: when the purge started (epoch ms). */
    z.object({ ok: z.literal(true), claimed: z.literal(true), addresses: luaList(z.string()), indexes: luaList(count), next: count, startedAt: count }),
    z.object({ ok: z.literal(true), wait: z.number().positive() }),
    /** No purge is running for this message (none asked, or it ended). */
    z.object({ ok: z.literal(true), stopped: z.literal(true) }),
    z.object({ ok: z.literal(true), ended: z.boolean() }),
  ]),
} as const;

export type Answer<N extends keyof typeof ANSWERS> = z.infer<(typeof ANSWERS)[N]>;
export type Committed<N extends keyof typeof ANSWERS> = Extract<Answer<N>, { ok: true }>;
