import { describe, expect, it } from "vitest";
import {
  ACTIONS,
  DRAFT_STATES,
  HISTORY_STATES,
  NEW,
  PAUSABLE_STATES,
  PENDING_STATES,
  RECALLABLE_STATES,
  STATES,
  TERMINAL_STATES,
  TRANSITIONS,
  canApply,
  isAllowedTransition,
  type Action,
  type FromState,
  type State,
} from "../../src/domain/lifecycle.js";

// The spec's lifecycle, written out independently of the table under test.
const EXPECTED: Array<[Action, FromState, FromState]> = [
  // A draft is its author's: saved (each save a revision), discarded (deleted: back to nothing), submitted.
  ["saveDraft", "new", "draft"],
  ["saveDraft", "draft", "draft"],
  ["discard", "draft", "new"],
  ["submit", "new", "pending_approval"],
  ["submit", "draft", "pending_approval"],
  ["edit", "pending_approval", "pending_approval"],
  ["edit", "rejected", "pending_approval"],
  ["approve", "pending_approval", "pending_approval"],
  ["approve", "pending_approval", "scheduled"],
  ["reject", "pending_approval", "rejected"],
  ["withdraw", "pending_approval", "withdrawn"],
  ["withdraw", "scheduled", "withdrawn"],
  ["expire", "pending_approval", "expired"],
  ["release", "scheduled", "sending"],
  ["finish", "sending", "sent"],
  ["recall", "scheduled", "recalled"],
  ["recall", "sending", "recalled"],
  ["recall", "sending", "correcting"],
  ["recall", "sent", "correcting"],
  // The original has nothing queued or in flight: its correction starts (an audited step, same state).
  ["startCorrection", "correcting", "correcting"],
  // A custom correction text awaits a second person: approved, rejected, or replaced by the standard one.
  ["approveCorrection", "correcting", "correcting"],
  ["rejectCorrection", "correcting", "correcting"],
  ["standardCorrection", "correcting", "correcting"],
  ["finishCorrection", "correcting", "corrected"],
  // The roles table: ops "pause and resume a fan-out". A flag on a running fan-out, not a state.
  ["pause", "sending", "sending"],
  ["pause", "correcting", "correcting"],
  ["resume", "sending", "sending"],
  ["resume", "correcting", "correcting"],
  // A staged send: Airlock opens its next wave, ops continue it (the roles table: "halt or continue a staged send").
  ["openWave", "sending", "sending"],
  ["continue", "sending", "sending"],
];

describe("lifecycle table", () => {
  it("allows exactly the spec's transitions, for every action x from x to", () => {
    let checked = 0;
    const froms: FromState[] = [NEW, ...STATES];
    for (const action of ACTIONS)
      for (const from of froms)
        for (const to of froms) {
          const expected = EXPECTED.some(([a, f, t]) => a === action && f === from && t === to);
          expect(isAllowedTransition(action, from, to), `${action}: ${from} -> ${to}`).toBe(expected);
          checked++;
        }
    expect(checked).toBe(ACTIONS.length * froms.length * froms.length);
  });

  it("lets nothing leave a terminal state, except the spec's edit of a rejected message", () => {
    for (const s of TERMINAL_STATES)
      for (const a of ACTIONS) expect(canApply(a, s), `${a} from ${s}`).toBe(a === "edit" && s === "rejected");
  });

  it("reaches every state from the table", () => {
    const reached = new Set<FromState>([NEW]);
    for (const byFrom of Object.values(TRANSITIONS)) for (const tos of Object.values(byFrom)) for (const t of tos ?? []) reached.add(t);
    expect([...reached].sort()).toEqual([NEW, ...STATES].sort());
  });
});

describe("state sets derived from the table", () => {
  it("names the spec's terminal states, the dashboard's pending and history, and what recall and pause act on", () => {
    expect([...TERMINAL_STATES].sort()).toEqual(["corrected", "expired", "recalled", "rejected", "withdrawn"]);
    expect([...PENDING_STATES].sort()).toEqual(["correcting", "pending_approval", "scheduled", "sending"]);
    expect([...HISTORY_STATES].sort()).toEqual(["corrected", "expired", "recalled", "rejected", "sent", "withdrawn"]);
    expect([...DRAFT_STATES]).toEqual(["draft"]);
    expect([...RECALLABLE_STATES].sort()).toEqual(["scheduled", "sending", "sent"]);
    expect([...PAUSABLE_STATES].sort()).toEqual(["correcting", "sending"]);
  });

  it("splits every state into draft, pending or history: exactly one", () => {
    for (const s of STATES) expect([DRAFT_STATES, PENDING_STATES, HISTORY_STATES].filter((set) => set.includes(s)), s).toHaveLength(1);
  });
});
