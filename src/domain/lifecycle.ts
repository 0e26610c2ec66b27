/**
 * The message lifecycle: which state may follow which, in one table.
 *
 * Every state change in Airlock is a compare-and-set against this table: the table is injected
 * into the Lua prologue when the scripts are loaded (store/lua-lifecycle.ts), and the scripts'
 * one `transition(action, from, to)` refuses any pair that is not in it. Every state set the API
 * or the dashboard needs is derived from the table below, never written out again.
 */

export const STATES = [
  "draft",
  "pending_approval",
  "scheduled",
  "sending",
  "sent",
  "recalled",
  "correcting",
  "corrected",
  "rejected",
  "withdrawn",
  "expired",
] as const;
export type State = (typeof STATES)[number];

/** Where `submit` starts: a message that does not exist yet. Never stored. */
export const NEW = "new";
export type FromState = State | typeof NEW;

export const ACTIONS = [
  "saveDraft",
  "discard",
  "submit",
  "edit",
  "approve",
  "reject",
  "withdraw",
  "expire",
  "release",
  "finish",
  "recall",
  "startCorrection",
  "approveCorrection",
  "rejectCorrection",
  "standardCorrection",
  "finishCorrection",
  "pause",
  "resume",
  "openWave",
  "continue",
] as const;
export type Action = (typeof ACTIONS)[number];

/**
 * action -> state it is allowed from -> states it may lead to.
 * Some actions have two outcomes decided by data, not by the caller:
 * - approve stays pending until enough distinct approvals are in, then schedules;
 * - recall gives `recalled` when nobody was handed the message (nothing sent, failed or in an SMTP
 *   transaction), else `correcting`; a correction with nobody to correct (every delivery failed
 *   for good) then finishes at once (`correcting` -> `corrected`, zero corrections).
 */
export const TRANSITIONS = {
  // A draft is its author's: saved (a new revision each time), discarded (deleted: back to `new`), submitted.
  saveDraft: { new: ["draft"], draft: ["draft"] },
  discard: { draft: ["new"] },
  submit: { new: ["pending_approval"], draft: ["pending_approval"] },
  // A rejected message may be edited: that makes a new revision and submits it again.
  edit: { pending_approval: ["pending_approval"], rejected: ["pending_approval"] },
  approve: { pending_approval: ["pending_approval", "scheduled"] },
  reject: { pending_approval: ["rejected"] },
  // "withdraw their own before release": while waiting for approval and during the hold.
  withdraw: { pending_approval: ["withdrawn"], scheduled: ["withdrawn"] },
  expire: { pending_approval: ["expired"] },
  release: { scheduled: ["sending"] },
  finish: { sending: ["sent"] },
  recall: {
    scheduled: ["recalled"],
    sending: ["recalled", "correcting"],
    sent: ["correcting"],
  },
  // The original has nothing queued or in flight any more: the correction's audience is final.
  startCorrection: { correcting: ["correcting"] },
  // A custom correction text waits for a second person: approved, rejected (the standard
  // correction goes instead), or replaced by the standard correction by the recaller. Each may let
  // the correction start (startCorrection in the same step).
  approveCorrection: { correcting: ["correcting"] },
  rejectCorrection: { correcting: ["correcting"] },
  standardCorrection: { correcting: ["correcting"] },
  finishCorrection: { correcting: ["corrected"] },
  // Ops hold a running fan-out (original or correction) and let it go on: a flag, the state stays.
  pause: { sending: ["sending"], correcting: ["correcting"] },
  resume: { sending: ["sending"], correcting: ["correcting"] },
  // A staged send (store/lua/waves.lua): Airlock opens its next wave (the canary after the seed
  // cohort, the rest after the wait); ops continue a halted or waiting one (the rest goes now).
  openWave: { sending: ["sending"] },
  continue: { sending: ["sending"] },
} as const satisfies Record<Action, Partial<Record<FromState, readonly FromState[]>>>;

/** Who takes each action: a person (API, dashboard, link) or Airlock itself (timers, the fan-out). */
export const TAKEN_BY = {
  saveDraft: "person",
  discard: "person",
  submit: "person",
  edit: "person",
  approve: "person",
  reject: "person",
  withdraw: "person",
  expire: "system",
  release: "system",
  finish: "system",
  recall: "person",
  startCorrection: "system",
  approveCorrection: "person",
  rejectCorrection: "person",
  standardCorrection: "person",
  finishCorrection: "system",
  pause: "person",
  resume: "person",
  openWave: "system",
  continue: "person",
} as const satisfies Record<Action, "person" | "system">;

const table: Record<Action, Partial<Record<FromState, readonly FromState[]>>> = TRANSITIONS;

export function allowedFrom(action: Action): FromState[] {
  return Object.keys(table[action]) as FromState[];
}

export function canApply(action: Action, from: FromState): boolean {
  return table[action][from] !== undefined;
}

export function isAllowedTransition(action: Action, from: FromState, to: FromState): boolean {
  return table[action][from]?.includes(to) ?? false;
}

/** Every (action, from, to) the table allows, in the table's order. */
export function allTransitions(): Array<{ action: Action; from: FromState; to: FromState }> {
  return ACTIONS.flatMap((action) => Object.entries(table[action]).flatMap(([from, tos]) => (tos ?? []).map((to) => ({ action, from: from as FromState, to }))));
}

const statesWhere = (p: (s: State) => boolean): readonly State[] => Object.freeze(STATES.filter(p));

/** Terminal: nothing but a new revision (the `edit` of a rejected message) may follow. */
export const TERMINAL_STATES: readonly State[] = statesWhere((s) => ACTIONS.every((a) => a === "edit" || !canApply(a, s)));

/**
 * Pending: Airlock itself will still move the message on (expire, release, finish the fan-out or
 * the correction): the dashboard's front page, "everything that may still go out".
 */
export const PENDING_STATES: readonly State[] = statesWhere((s) => ACTIONS.some((a) => TAKEN_BY[a] === "system" && (table[a][s] ?? []).some((to) => to !== s)));

/** Not submitted yet: its author's to edit, submit or discard; nobody is asked to approve it. */
export const DRAFT_STATES: readonly State[] = statesWhere((s) => canApply("submit", s));

/** Over: neither pending nor a draft — the dashboard's history (`sent` included: it may still be recalled). */
export const HISTORY_STATES: readonly State[] = statesWhere((s) => !PENDING_STATES.includes(s) && !DRAFT_STATES.includes(s));

/** A recall can act on these. */
export const RECALLABLE_STATES: readonly State[] = statesWhere((s) => canApply("recall", s));

/** Ops may hold the running fan-out of these. */
export const PAUSABLE_STATES: readonly State[] = statesWhere((s) => canApply("pause", s));

/** A fan-out (the original's or the correction's) runs in these. */
export const FANOUT_STATES: readonly State[] = PAUSABLE_STATES;
