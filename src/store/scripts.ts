/**
 * Loads the Lua scripts of store/lua/ and registers them as ioredis commands (EVALSHA with a
 * fallback to EVAL after a Redis restart emptied the script cache). Every message script is the
 * generated lifecycle table (lua-lifecycle.ts), then prologue.lua, then its own text; each answer
 * is parsed against its schema (script-answers.ts).
 */
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import type { z } from "zod";
import { luaLifecycle } from "./lua-lifecycle.js";
import { ANSWERS, type Answer } from "./script-answers.js";

const dir = new URL("./lua/", import.meta.url);
const read = (name: string) => readFileSync(new URL(name, dir), "utf8");

const prologue = luaLifecycle() + read("prologue.lua");
const fanout = read("fanout-prologue.lua");

const SOURCES = {
  submit: prologue + read("submit.lua"),
  approve: prologue + read("approve.lua"),
  move: prologue + read("move.lua"),
  recall: prologue + read("recall.lua"),
  pause: prologue + read("pause.lua"),
  note: prologue + read("note.lua"),
  correction: prologue + read("correction.lua"),
  draft: prologue + read("draft.lua"),
  correctionDigest: prologue + read("correction-digest.lua"),
  claim: prologue + fanout + read("claim.lua"),
  settle: prologue + fanout + read("settle.lua"),
} as const satisfies Record<keyof typeof ANSWERS, string>;

export type ScriptName = keyof typeof SOURCES;

/** The ioredis command each script is registered as. */
const commandOf = (name: ScriptName) => `airlock${name[0]!.toUpperCase()}${name.slice(1)}`;

export interface ScriptRunner {
  run<N extends ScriptName>(name: N, keys: string[], args: Array<string | number>): Promise<Answer<N>>;
}

export function registerScripts(redis: Redis): ScriptRunner {
  for (const [name, lua] of Object.entries(SOURCES)) {
    const command = commandOf(name as ScriptName);
    if (!(command in redis)) redis.defineCommand(command, { lua });
  }
  return {
    async run(name, keys, args) {
      const fn = (redis as unknown as Record<string, (...a: Array<string | number>) => Promise<string>>)[commandOf(name)]!;
      const raw = await fn.call(redis, keys.length, ...keys, ...args);
      const schema: z.ZodType = ANSWERS[name];
      return schema.parse(JSON.parse(raw)) as Answer<typeof name>;
    },
  };
}

/** The full source of a script, as Redis runs it (tests read it). */
export function scriptSource(name: ScriptName): string {
  return SOURCES[name];
}
