/**
 * The lifecycle table (domain/lifecycle.ts) as Lua, prepended to every message script by
 * store/scripts.ts, so the scripts obey the very table the TypeScript reads: `TRANSITIONS` (as a string),
 * `STATE_KEY` (where each state's index is in KEYS), `COMMON_KEYS` and `NEW` (where `submit` starts).
 */
import { ACTIONS, NEW, STATES, TRANSITIONS } from "../domain/lifecycle.js";

/**
 * KEYS every message script gets first: message, its audit, the global audit, the audit head, one
 * index per state, then the set of running purges (a recall's purge may start in any script that
 * can be the last to see the original stop: prologue.lua startPurgeIfQuiet).
 */
export const COMMON_KEYS = 5 + STATES.length;

/** Position (1-based, as in Lua's KEYS) of each state's index among the common keys. */
export const STATE_KEY_POSITION: Readonly<Record<string, number>> = Object.fromEntries(STATES.map((s, i) => [s, 5 + i]));

const str = (s: string) => JSON.stringify(s); // a JSON string of [a-z_] is a valid Lua string

/**
 * The table as one string of `|action:from:to|` entries, searched with plain `string.find`: a
 * nested Lua table literal would be built afresh at every script call (Redis keeps no Lua state
 * between calls), which cost the fan-out's claim and settle ~15% more Redis time.
 */
export function transitionString(): string {
  const table: Record<string, Partial<Record<string, readonly string[]>>> = TRANSITIONS;
  const entries = ACTIONS.flatMap((action) => Object.entries(table[action]!).flatMap(([from, tos]) => (tos ?? []).map((to) => `${action}:${from}:${to}`)));
  return `|${entries.join("|")}|`;
}

export function luaLifecycle(): string {
  const stateKeys = STATES.map((s) => `[${str(s)}] = ${STATE_KEY_POSITION[s]}`);
  return [
    "-- Generated from domain/lifecycle.ts by store/lua-lifecycle.ts: do not edit in a script.",
    `local TRANSITIONS = ${str(transitionString())}`,
    `local STATE_KEY = {${stateKeys.join(", ")}}`,
    `local COMMON_KEYS = ${COMMON_KEYS}`,
    `local NEW = ${str(NEW)}`,
    "",
  ].join("\n");
}
