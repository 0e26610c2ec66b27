/**
 * The message lifecycle: which state may follow which, in one table.
 * Every state change in Airlock is a compare-and-set against this table (see store/message-store.ts),
 * so a transition not listed here cannot happen anywhere.
 */

export const STATES = [
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

export const ACTIONS = [
  "edit",
  "approve",
  "reject",
  "withdraw",
  "expire",
  "release",
  "finish",
  "recall",
  "finishCorrection",
  "pause",
  "resume",
] as const;
export type Action = (typeof ACTIONS)[number];

/**
 * action -> state it is allowed from -> states it may lead to.
 * Some actions have two outcomes decided by data, not by the caller:
 * - approve stays pending until enough distinct approvals are in, then schedules;
 * - recall during a fan-out gives `recalled` when nobody had been handed the message yet, else `correcting`.
 */
export const TRANSITIONS: Readonly<Record<Action, Partial<Record<State, readonly State[]>>>> = {
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
  finishCorrection: { correcting: ["corrected"] },
  // Ops hold a running fan-out (original or correction) and let it go on: a flag, the state stays.
  pause: { sending: ["sending"], correcting: ["correcting"] },
  resume: { sending: ["sending"], correcting: ["correcting"] },
};

export const TERMINAL_STATES: ReadonlySet<State> = new Set(["recalled", "corrected", "rejected", "withdrawn", "expired"]);

/** States shown as "pending sends": something may still go out. */
export const PENDING_STATES: ReadonlySet<State> = new Set(["pending_approval", "scheduled", "sending"]);

export function allowedFrom(action: Action): State[] {
  return Object.keys(TRANSITIONS[action]) as State[];
}

export function canApply(action: Action, from: State): boolean {
  return TRANSITIONS[action][from] !== undefined;
}

export function isAllowedTransition(action: Action, from: State, to: State): boolean {
  return TRANSITIONS[action][from]?.includes(to) ?? false;
}
