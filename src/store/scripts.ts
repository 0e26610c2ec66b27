/**
 * Loads the Lua scripts of store/lua/ and registers them as ioredis commands (EVALSHA with a
 * fallback to EVAL after a Redis restart emptied the script cache). Every message script is the
 * generated lifecycle table (lua-lifecycle.ts), then prologue.lua, then its own text; each answer
 * is parsed against its schema (script-answers.ts).
 *
 * With `replicas` ≥ 1 (REDIS_MIN_REPLICAS_ACK), a script that answers a person's decision
 * (approve, reject, withdraw, recall, pause/resume, correction decisions: see ACKNOWLEDGED) is
 * followed by `WAIT replicas timeoutMs` on the same connection before it answers. Fewer replicas
 * in time is a ReplicationLagError (HTTP 503 `not_replicated`): the change is on the primary, not
 * yet known to survive a failover, and may be retried.
 */
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import type { z } from "zod";
import { ReplicationLagError } from "../domain/errors.js";
import { AIRLOCK_ACTOR } from "../domain/message.js";
import { CORRECTION_DUPLICATE_PREFIX } from "./keys.js";
import { luaLifecycle } from "./lua-lifecycle.js";
import { MAX_EVIDENCE } from "../waves/signals.js";
import { ANSWERS, type Answer } from "./script-answers.js";

const dir = new URL("./lua/", import.meta.url);
const read = (name: string) => readFileSync(new URL(name, dir), "utf8");

const prologue = luaLifecycle() + read("prologue.lua");
const fanout =
  `local CORRECTION_DUPLICATE = ${JSON.stringify(CORRECTION_DUPLICATE_PREFIX)}\nlocal AIRLOCK = ${JSON.stringify(AIRLOCK_ACTOR)}\nlocal MAX_EVIDENCE = ${MAX_EVIDENCE}\n` +
  read("fanout-prologue.lua");

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
  purge: prologue + fanout + read("purge.lua"),
  waves: prologue + fanout + read("waves.lua"),
} as const satisfies Record<keyof typeof ANSWERS, string>;

export type ScriptName = keyof typeof SOURCES;

/** The ioredis command each script is registered as. */
const commandOf = (name: ScriptName) => `airlock${name[0]!.toUpperCase()}${name.slice(1)}`;

export interface ScriptRunner {
  run<N extends ScriptName>(name: N, keys: string[], args: Array<string | number>): Promise<Answer<N>>;
}

export interface ReplicaAck {
  /** Replicas that must have a change before it is answered (Redis WAIT). 0: no WAIT is sent. */
  replicas: number;
  /** How long WAIT waits for them, in ms. */
  timeoutMs: number;
  /**
   * A connection of their own for the scripts that WAIT: a WAIT holds its connection until the
   * replicas answer (up to timeoutMs when they are away), and every other command of the process
   * (reads, sessions, the fan-out's claims) would queue behind it. Default: the store's.
   */
  connection?: Redis;
}

/**
 * Which answers wait for the replicas. `args` as MessageStore passes them: events key, now, actor,
 * then the script's own (for `move` and `pause` the action first).
 * - Decisions people are told about, whatever the answer, refusals included (a retried recall
 *   answering "already recalled" must be as durable as the first answer would have been):
 *   approve, recall, ops' pause and resume, the correction's decisions and digest, and of `move`
 *   reject and withdraw.
 * - Not the timers' release and expire, nor the worker's own halt (Airlock's pause when a mail no
 *   longer matches its approval): nobody is answered, and one lost with a failed primary is done
 *   again (the sweep re-releases and re-expires what is due; the next batch halts again). With
 *   the replicas away they would only fail jobs.
 * - Not `submit` or `draft`: a 503 on a recorded submit invites a retry that makes a second
 *   message; a lost one is visible to its author, and nothing goes out unapproved.
 * - Not the fan-out's `claim` and `settle`: a lost settle leaves its recipients in flight
 *   (counted if sent again). A claim lost with the primary could let its recipients be sent again
 *   uncounted, but a claim reaches the replicas within the replication lag (well under a
 *   millisecond on a LAN), and waiting for each one would stop every fan-out, not only decisions,
 *   while the replicas are away.
 */
const ACKNOWLEDGED: Partial<Record<ScriptName, (args: ReadonlyArray<string | number>) => boolean>> = {
  approve: () => true,
  recall: () => true,
  pause: (args) => args[2] !== AIRLOCK_ACTOR,
  correction: () => true,
  correctionDigest: () => true,
  move: (args) => args[3] === "reject" || args[3] === "withdraw",
  // Ops continuing a staged send (a halt by hand is an ops pause, above), and every signal: one may
  // halt the send, and a halt lost with a failed primary would let the rest go at the wait's end
  // (the listener answers 451 and the report page 503 meanwhile: the signal comes again).
  // args: events, now, actor, "original", mode, how.
  waves: (args) => args[4] === "signal" || (args[4] === "rest" && args[5] === "continue"),
};

/** Connection "generations": a reconnect (to a new primary, after a failover) starts a new one. */
const generations = new WeakMap<Redis, { n: number }>();
function generationOf(redis: Redis): { n: number } {
  let g = generations.get(redis);
  if (!g) {
    const created = { n: 0 };
    redis.on("ready", () => created.n++);
    generations.set(redis, (g = created));
  }
  return g;
}

export function registerScripts(redis: Redis, ack: ReplicaAck = { replicas: 0, timeoutMs: 0 }): ScriptRunner {
  const waiting = ack.replicas > 0 ? (ack.connection ?? redis) : null;
  for (const c of waiting && waiting !== redis ? [redis, waiting] : [redis]) {
    for (const [name, lua] of Object.entries(SOURCES)) {
      const command = commandOf(name as ScriptName);
      if (!(command in c)) c.defineCommand(command, { lua });
    }
  }
  const generation = waiting ? generationOf(waiting) : null;

  /**
   * WAIT covers every write this connection made before it, and only on the server it is sent to.
   * ioredis sends a command again after a reconnect (to the new primary, after a failover), where
   * a WAIT would count replicas that never saw the change: the script's answer and WAIT's must
   * come from the same connection, else the change is not known to be replicated.
   */
  const replicated = async (): Promise<void> => {
    const before = generation!.n; // the connection the script's answer just came from
    let acknowledged: number;
    try {
      acknowledged = await waiting!.wait(ack.replicas, ack.timeoutMs);
    } catch (e) {
      throw new ReplicationLagError(0, ack.replicas, ack.timeoutMs, { cause: e });
    }
    if (generation!.n !== before) throw new ReplicationLagError(0, ack.replicas, ack.timeoutMs, { cause: new Error("reconnected to Redis between the change and WAIT") });
    if (acknowledged < ack.replicas) throw new ReplicationLagError(acknowledged, ack.replicas, ack.timeoutMs);
  };

  return {
    async run(name, keys, args) {
      const acknowledged = waiting !== null && ACKNOWLEDGED[name]?.(args) === true;
      const c = acknowledged ? waiting : redis;
      const fn = (c as unknown as Record<string, (...a: Array<string | number>) => Promise<string>>)[commandOf(name)]!;
      const raw = await fn.call(c, keys.length, ...keys, ...args);
      const schema: z.ZodType = ANSWERS[name];
      const answer = schema.parse(JSON.parse(raw)) as Answer<typeof name>;
      if (acknowledged) {
        await replicated().catch((e: unknown) => {
          if (e instanceof ReplicationLagError) e.answer = answer;
          throw e;
        });
      }
      return answer;
    },
  };
}

/** The full source of a script, as Redis runs it (tests read it). */
export function scriptSource(name: ScriptName): string {
  return SOURCES[name];
}
