/**
 * The lifecycle table governs the real scripts: for every action and every state (each reached
 * through the scripts themselves, on a real Redis), the script's outcome is a pair the table allows,
 * every audit entry it writes is such a pair, and a pair the table refuses answers `conflict` (409)
 * and changes nothing. Then random sequences of actions, including random SMTP outcomes, check
 * the same on states the recipes do not reach (partial fan-outs, failures, pauses).
 */
import { readdirSync, readFileSync } from "node:fs";
import fc from "fast-check";
import { beforeAll, describe, expect, it } from "vitest";
import { ACTIONS, NEW, STATES, TRANSITIONS, canApply, isAllowedTransition, type Action, type FromState, type State } from "../../src/domain/lifecycle.js";
import { approvalLadder, approvalOutcome } from "../../src/domain/policies.js";
import { STATUS } from "../../src/http/errors.js";
import { keys } from "../../src/store/keys.js";
import { MessageStore, type FanoutKind, type NewMessageFields } from "../../src/store/message-store.js";
import { redisForThisFile } from "../support/redis.js";

const ctx = redisForThisFile();
let now = 1_800_000_000_000;
const clock = { now: () => now };
let store: MessageStore;
beforeAll(() => {
  store = new MessageStore(ctx.redis, clock);
});

const AUTHOR = "author@corp.example";
const APPROVER = "approver@corp.example";
const OPS = "ops@corp.example";
const ADDRESSES = ["a@corp.example", "b@corp.example", "c@corp.example"];
const STANDARD = { text: "", required: 0 };

async function recallNow(id: string, correction: { text: string; required: number }) {
  return store.recall(id, OPS, "mistake", correction);
}
const ladder = approvalLadder({ approvalsRequired: 1, largeAudienceThreshold: 1000, largeAudienceApprovals: 2 });
/** MAX_REVISIONS as configured by default. */
const LIMITS = { maxRevisions: 50 };
let seq = 0;

function fields(subject = "Lifecycle"): NewMessageFields {
  return {
    digest: "d".repeat(64),
    markdown: "",
    template: "",
    subject,
    text: "Hello",
    html: null,
    from: "comms@corp.example",
    audience: { lists: [], addresses: ADDRESSES },
    toHeader: "Everyone <everyone@corp.example>",
    author: AUTHOR,
    holdSeconds: 60,
    sendAt: null,
    expiresAt: now + 3_600_000,
    messageId: `<lifecycle-${seq}@corp.example>`,
  };
}

/** Everything a script may change about a message, to compare before and after. */
async function snapshot(id: string) {
  const [hash, audit, ...indexes] = await Promise.all([
    ctx.redis.hgetall(keys.message(id)),
    ctx.redis.xlen(keys.audit(id)),
    ...STATES.map((s) => ctx.redis.zscore(keys.messagesInState(s), id)),
  ]);
  const [original, correction] = await Promise.all([ctx.redis.get(keys.delivery(id)), ctx.redis.get(keys.correction(id))]);
  return { hash, audit, indexes, original, correction };
}

async function stateOf(id: string): Promise<State | undefined> {
  return ((await ctx.redis.hget(keys.message(id), "state")) ?? undefined) as State | undefined;
}

/** The audit entries written since `from` entries: each state change in them must be in the table. */
async function entriesSince(id: string, from: number): Promise<Array<{ action: string; from: string; to: string }>> {
  const all = await ctx.redis.xrange(keys.audit(id), "-", "+");
  return all.slice(from).map(([, f]) => {
    const o: Record<string, string> = {};
    for (let i = 0; i + 1 < f.length; i += 2) o[f[i]!] = f[i + 1]!;
    return { action: o.action!, from: o.from!, to: o.to! };
  });
}

/** The message sits in exactly the index of its state; a discarded draft (no state) in none. */
function expectIndexed(indexes: Array<string | null>, state: State | undefined) {
  expect(indexes.filter((x) => x !== null)).toHaveLength(state === undefined ? 0 : 1);
  if (state !== undefined) expect(indexes[STATES.indexOf(state)]).not.toBeNull();
}

function expectEntriesAllowed(entries: Array<{ action: string; from: string; to: string }>) {
  for (const e of entries) {
    if (!(ACTIONS as readonly string[]).includes(e.action)) continue; // notes (notify, remind, smtpRetry) change no state
    expect(isAllowedTransition(e.action as Action, e.from as FromState, e.to as State), `audit ${e.action}: ${e.from} -> ${e.to}`).toBe(true);
  }
}

async function approveAsPolicyDecides(id: string, by = APPROVER) {
  const m = (await store.get(id))!;
  const { to, releaseAt } = approvalOutcome({ approvalsGiven: m.approvals.length, requiredApprovals: m.requiredApprovals, holdSeconds: m.holdSeconds, sendAtMs: null }, now);
  return store.approve(id, by, { revision: m.revision, seenApprovals: m.approvals.length, to, releaseAt, comment: "", digest: m.digest }, now);
}

/** Claims every recipient of one kind in one transaction and settles them with `letters` (s, f, t, a), cycled. */
async function fanOut(id: string, kind: FanoutKind, letters: string) {
  const claim = await store.claim(id, kind, 0, ADDRESSES.length - 1, 1e6, 1e6, ADDRESSES.length - 1);
  if (!("claimed" in claim) || claim.addresses.length === 0) return claim;
  return store.settle(
    id,
    kind,
    claim.addresses.map((address, j) => ({ index: claim.indexes[j]!, address, outcome: letters[j % letters.length] as "s", reply: "550 no" })),
  );
}

/** How each state is reached, through the real scripts only. */
function draftFields() {
  const { digest: _digest, expiresAt: _expiresAt, ...rest } = fields("Draft");
  return rest;
}

const RECIPES: Record<State, (id: string) => Promise<void>> = {
  draft: async (id) => void (await store.saveDraft(id, AUTHOR, draftFields())),
  pending_approval: async (id) => void (await store.submit("create", id, AUTHOR, fields(), ladder, now, LIMITS)),
  scheduled: async (id) => {
    await RECIPES.pending_approval(id);
    await approveAsPolicyDecides(id);
  },
  sending: async (id) => {
    await RECIPES.scheduled(id);
    now += 61_000;
    await store.move("release", id, "scheduler");
  },
  sent: async (id) => {
    await RECIPES.sending(id);
    await fanOut(id, "original", "s");
  },
  recalled: async (id) => {
    await RECIPES.scheduled(id);
    await recallNow(id, STANDARD);
  },
  correcting: async (id) => {
    await RECIPES.sent(id);
    await recallNow(id, STANDARD);
  },
  corrected: async (id) => {
    await RECIPES.correcting(id);
    await fanOut(id, "correction", "s");
  },
  rejected: async (id) => {
    await RECIPES.pending_approval(id);
    await store.move("reject", id, APPROVER, { detail: { reason: "no" } });
  },
  withdrawn: async (id) => {
    await RECIPES.pending_approval(id);
    await store.move("withdraw", id, AUTHOR);
  },
  expired: async (id) => {
    await RECIPES.pending_approval(id);
    now += 3_600_001;
    await store.move("expire", id, "scheduler");
  },
};

/** Takes `action` on message `id` through its script, with arguments a caller would pass. */
async function take(action: Action, id: string, customCorrection = false): Promise<{ ok: boolean; err?: string } | null> {
  switch (action) {
    case "submit": {
      // From a draft its own submit; from anywhere else (a message that exists) a create, refused.
      const m = await store.get(id);
      return m?.state === "draft" ? store.submit("draft", id, AUTHOR, fields(), ladder, now, { ...LIMITS, seenRevision: m.revision }) : store.submit("create", id, AUTHOR, fields(), ladder, now, LIMITS);
    }
    case "saveDraft":
      return store.saveDraft(id, AUTHOR, draftFields(), (await store.get(id))?.revision);
    case "discard":
      return store.discardDraft(id, AUTHOR);
    case "edit": {
      const m = await store.get(id);
      return store.submit("edit", id, AUTHOR, fields("Edited"), ladder, now, { ...LIMITS, seenRevision: m?.revision });
    }
    case "approve":
      return approveAsPolicyDecides(id);
    case "reject":
      return store.move("reject", id, APPROVER, { detail: { reason: "no" } });
    case "withdraw":
      return store.move("withdraw", id, AUTHOR);
    case "expire":
      now += 3_600_001; // due: the table is under test here, not the clock
      return store.move("expire", id, "scheduler");
    case "release":
      now += 61_000;
      return store.move("release", id, "scheduler");
    case "recall":
      return recallNow(id, customCorrection ? { text: "Keep the app.", required: 1 } : STANDARD);
    case "pause":
    case "resume":
      return store.pauseOrResume(action, id, OPS, "checking");
    // A staged send's waves (none of these recipes is staged: the script refuses them, not_staged).
    case "openWave":
      return store.wavesRest(id, "scheduler", "timer");
    case "continue":
      return store.wavesRest(id, OPS, "continue");
    case "approveCorrection":
    case "rejectCorrection":
    case "standardCorrection": {
      const c = (await store.get(id))?.correction;
      return store.decideCorrection(action, id, APPROVER, { approvals: c?.approvals.length ?? 0, digest: c?.digest ?? "" }, { reason: "no" });
    }
    // Taken by the fan-out itself: a claim and a settle of every recipient.
    case "finish":
      await fanOut(id, "original", "s");
      return null;
    case "startCorrection":
    case "finishCorrection":
      await fanOut(id, "correction", "s");
      return null;
  }
}

describe("the lifecycle table governs the scripts", () => {
  it("for every action from every state: an allowed pair, or 409 and nothing changed", async () => {
    let tried = 0;
    for (const state of STATES) {
      for (const action of ACTIONS) {
        const id = String(++seq);
        await RECIPES[state](id);
        expect(await stateOf(id), `recipe for ${state}`).toBe(state);
        const before = await snapshot(id);
        const answer = await take(action, id);
        const after = await snapshot(id);
        const entries = await entriesSince(id, before.audit);
        expectEntriesAllowed(entries);
        const to = await stateOf(id);
        if (!canApply(action, state)) {
          // Refused by the table: a conflict, and not one byte changed.
          if (answer) expect(answer, `${action} from ${state}`).toMatchObject({ ok: false, err: "conflict" });
          expect(after, `${action} from ${state} changed something`).toEqual(before);
        } else if (answer?.ok) {
          expect(isAllowedTransition(action, state, to ?? NEW), `${action}: ${state} -> ${to ?? NEW}`).toBe(true);
          expect(entries.map((e) => e.action)).toContain(action);
        }
        expectIndexed(after.indexes, to);
        tried++;
      }
    }
    expect(tried).toBe(STATES.length * ACTIONS.length);
    expect(STATUS.conflict).toBe(409);
  });

  it("submit starts from nothing: a new id is created, an existing one is a conflict", async () => {
    const id = String(++seq);
    const a = await store.submit("create", id, AUTHOR, fields(), ladder, now, LIMITS);
    expect(a).toMatchObject({ ok: true, state: "pending_approval", followUps: [{ do: "scheduleExpiry", revision: 1 }] });
    expect(isAllowedTransition("submit", NEW, a.ok ? a.state : "pending_approval")).toBe(true);
    expect(await store.submit("create", id, AUTHOR, fields(), ladder, now, LIMITS)).toMatchObject({ ok: false, err: "conflict" });
  });

  describe("a recall of a message that reached nobody ends it", () => {
    it("recalled, when nobody was handed it yet (released, nothing claimed)", async () => {
      const id = String(++seq);
      await RECIPES.sending(id);
      expect(await recallNow(id, STANDARD)).toMatchObject({ ok: true, state: "recalled", delivered: 0, followUps: [] });
      expect((await store.get(id))!.counts).toMatchObject({ skipped: 3, queued: 0, sent: 0 });
    });

    it("corrected with zero corrections, when every delivery failed for good (the message had ended sent)", async () => {
      const id = String(++seq);
      await RECIPES.sending(id);
      await fanOut(id, "original", "f");
      expect(await stateOf(id)).toBe("sent");
      const before = (await snapshot(id)).audit;
      expect(await recallNow(id, STANDARD)).toMatchObject({ ok: true, state: "corrected", delivered: 0, followUps: [] });
      expect((await entriesSince(id, before)).map((e) => `${e.action} ${e.from}->${e.to}`)).toEqual([
        "recall sent->correcting",
        "startCorrection correcting->correcting",
        "finishCorrection correcting->corrected",
      ]);
      expect((await store.get(id))!.counts).toMatchObject({ sent: 0, failed: 3, corrected: 0, correctionFailed: 0 });
    });

    it("corrected with zero corrections at once even with a custom text: there is nobody to approve it for", async () => {
      const id = String(++seq);
      await RECIPES.sending(id);
      await fanOut(id, "original", "f");
      expect(await recallNow(id, { text: "Keep the app.", required: 1 })).toMatchObject({ ok: true, state: "corrected" });
    });

    it("corrected with zero corrections, when the fan-out was under way and all it handed over failed", async () => {
      const id = String(++seq);
      await RECIPES.sending(id);
      const claim = await store.claim(id, "original", 0, 0, 1e6, 1e6, 2);
      if (!("claimed" in claim)) throw new Error("not claimed");
      await store.settle(id, "original", [{ index: 0, address: claim.addresses[0]!, outcome: "f", reply: "550 no" }]);
      expect(await recallNow(id, STANDARD)).toMatchObject({ ok: true, state: "corrected", delivered: 0 });
      expect((await store.get(id))!.counts).toMatchObject({ failed: 1, skipped: 2, sent: 0 });
    });
  });

  it("random sequences of actions and SMTP outcomes: every change is a pair of the table, every table refusal changes nothing", async () => {
    type Step = { action: Action | "claimSome"; letters: string; pause: boolean };
    const step = fc.record({
      action: fc.constantFrom<Step["action"]>(...ACTIONS, "claimSome", "claimSome"),
      letters: fc.stringMatching(/^[sfta]{1,3}$/),
      pause: fc.boolean(),
    });
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 14 }), async (steps) => {
        const id = String(++seq);
        await RECIPES.pending_approval(id);
        for (const s of steps) {
          const state = (await stateOf(id))!;
          const before = await snapshot(id);
          let answer: { ok: boolean; err?: string } | null = null;
          if (s.action === "claimSome") {
            // One transaction of the first recipient(s), outcomes as drawn: partial fan-outs, failures, retries.
            const kind: FanoutKind = s.pause ? "correction" : "original";
            const claim = await store.claim(id, kind, 0, s.letters.length - 1, 1e6, 1e6, ADDRESSES.length - 1);
            if ("claimed" in claim && claim.addresses.length > 0) {
              await store.settle(id, kind, claim.addresses.map((address, j) => ({ index: claim.indexes[j]!, address, outcome: s.letters[j] as "s", reply: "451 later" })));
            }
          } else if (s.action === "submit" || s.action === "edit") {
            answer = await take(s.action === "submit" ? "submit" : "edit", id);
          } else {
            // A recall with a custom text (drawn with `pause`) leaves the correction waiting for approval.
            answer = await take(s.action, id, s.pause);
          }
          const after = await snapshot(id);
          expectEntriesAllowed(await entriesSince(id, before.audit));
          if (s.action !== "claimSome" && !canApply(s.action, state)) {
            if (answer) expect(answer).toMatchObject({ ok: false, err: "conflict" });
            expect(after).toEqual(before);
          }
          expectIndexed(after.indexes, await stateOf(id));
          if ((await stateOf(id)) === undefined) return; // a discarded draft: nothing left to act on
        }
      }),
      { numRuns: 60, seed: 20261201 },
    );
  });
});

describe("a submit that cannot be stored changes nothing", () => {
  it("refuses fields of the wrong type before the freeze: the pending message keeps its recipients", async () => {
    const id = String(++seq);
    await RECIPES.pending_approval(id);
    const before = await snapshot(id);
    const recipients = await ctx.redis.zrange(keys.recipients(id), "0", "-1");
    const broken = { ...fields("Broken"), subject: undefined as unknown as string, audience: { lists: [], addresses: ["zed@corp.example"] } };
    await expect(store.submit("edit", id, AUTHOR, broken, ladder, now, { ...LIMITS, seenRevision: 1 })).rejects.toThrow(/subject is not a string/);
    expect(await snapshot(id)).toEqual(before);
    expect(await ctx.redis.zrange(keys.recipients(id), "0", "-1")).toEqual(recipients);
  });
});

describe("the scripts hold no state pair of their own", () => {
  it("names no state in Lua: every state comes from the generated table", () => {
    const dir = new URL("../../src/store/lua/", import.meta.url);
    const files = readdirSync(dir).filter((f) => f.endsWith(".lua"));
    expect(files.length).toBeGreaterThanOrEqual(8);
    const found: string[] = [];
    for (const file of files) {
      const code = readFileSync(new URL(file, dir), "utf8")
        .split("\n")
        .map((line) => line.replace(/--.*$/, "")) // comments may name states
        .join("\n")
        // Two counters of the message hash share a state's name: as field names they are no state.
        .replace(/num\(KEYS\[1\], '(sent|corrected)'\)|incr\('(sent|corrected)',|'(sent|corrected)', 0\b/g, "<counter>");
      for (const state of STATES) if (new RegExp(`['"]${state}['"]`).test(code)) found.push(`${file}: '${state}'`);
    }
    expect(found).toEqual([]);
  });

  it("the table the scripts get is the TypeScript one, entry for entry", async () => {
    const { luaLifecycle, transitionString } = await import("../../src/store/lua-lifecycle.js");
    const entries = transitionString().split("|").filter(Boolean);
    const expected = Object.entries(TRANSITIONS).flatMap(([action, byFrom]) =>
      Object.entries(byFrom).flatMap(([from, tos]) => (tos as readonly string[]).map((to) => `${action}:${from}:${to}`)),
    );
    expect(entries).toEqual(expected);
    expect(luaLifecycle()).toContain(`local TRANSITIONS = "${transitionString()}"`);
  });
});
