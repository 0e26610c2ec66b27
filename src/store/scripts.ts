/**
 * Loads the Lua scripts of store/lua/ and registers them as ioredis commands (EVALSHA with a
 * fallback to EVAL after a Redis restart emptied the script cache).
 */
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";

const dir = new URL("./lua/", import.meta.url);
const read = (name: string) => readFileSync(new URL(name, dir), "utf8");

const prologue = read("prologue.lua");
const fanout = read("fanout-prologue.lua");

const SOURCES = {
  airlockSubmit: prologue + read("submit.lua"),
  airlockApprove: prologue + read("approve.lua"),
  airlockMove: prologue + read("move.lua"),
  airlockRecall: prologue + read("recall.lua"),
  airlockPause: prologue + read("pause.lua"),
  airlockNote: prologue + read("note.lua"),
  airlockClaim: prologue + fanout + read("claim.lua"),
  airlockSettle: prologue + fanout + read("settle.lua"),
} as const;

export type ScriptName = keyof typeof SOURCES;

export interface ScriptRunner {
  run(name: ScriptName, keys: string[], args: Array<string | number>): Promise<unknown>;
}

export function registerScripts(redis: Redis): ScriptRunner {
  for (const [name, lua] of Object.entries(SOURCES)) {
    if (!(name in redis)) redis.defineCommand(name, { lua });
  }
  return {
    async run(name, keys, args) {
      const fn = (redis as unknown as Record<string, (...a: Array<string | number>) => Promise<string>>)[name]!;
      const raw = await fn.call(redis, keys.length, ...keys, ...args);
      return JSON.parse(raw) as unknown;
    },
  };
}
