import { describe, expect, it } from "vitest";
import { ACTIONS, STATES, TERMINAL_STATES, TRANSITIONS, canApply, isAllowedTransition, type Action, type State } from "../../src/domain/lifecycle.js";

// The spec's lifecycle, written out independently of the table under test.
const EXPECTED: Array<[Action, State, State]> = [
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
  ["finishCorrection", "correcting", "corrected"],
  // The roles table: ops "pause and resume a fan-out". A flag on a running fan-out, not a state.
  ["pause", "sending", "sending"],
  ["pause", "correcting", "correcting"],
  ["resume", "sending", "sending"],
  ["resume", "correcting", "correcting"],
];

describe("lifecycle table", () => {
  it("allows exactly the spec's transitions, for every action x from x to", () => {
    let checked = 0;
    for (const action of ACTIONS)
      for (const from of STATES)
        for (const to of STATES) {
          const expected = EXPECTED.some(([a, f, t]) => a === action && f === from && t === to);
          expect(isAllowedTransition(action, from, to), `${action}: ${from} -> ${to}`).toBe(expected);
          checked++;
        }
    expect(checked).toBe(ACTIONS.length * STATES.length * STATES.length);
  });

  it("lets nothing leave a terminal state, except the spec's edit of a rejected message", () => {
    for (const s of TERMINAL_STATES)
      for (const a of ACTIONS) expect(canApply(a, s), `${a} from ${s}`).toBe(a === "edit" && s === "rejected");
  });

  it("reaches every state from the table", () => {
    const reached = new Set<State>(["pending_approval"]);
    for (const byFrom of Object.values(TRANSITIONS)) for (const tos of Object.values(byFrom)) for (const t of tos ?? []) reached.add(t);
    expect([...reached].sort()).toEqual([...STATES].sort());
  });
});
