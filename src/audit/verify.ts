/**
 * Checks the tamper-evident audit trail. Every entry of the global stream `{airlock}:audit`
 * carries `prev` (the hash of the entry before it) and `hash` = SHA-1(prev + "\n" + its fields),
 * computed inside the Lua script that wrote it (store/lua/prologue.lua `audit`). An edited entry
 * no longer matches its hash; a removed or inserted one breaks the `prev` chain; a removed tail
 * no longer matches the stored head. Each per-message stream must hold exactly the global
 * entries of that message.
 */
import { createHash } from "node:crypto";
import type { Redis } from "ioredis";
import { keys, PREFIX } from "../store/keys.js";

export interface AuditProblem {
  stream: string;
  entryId: string;
  problem: string;
}

export interface AuditReport {
  ok: boolean;
  entries: number;
  messages: number;
  head: string | null;
  problems: AuditProblem[];
}

/** Entries read per XRANGE call: bounded memory whatever the length of the trail. */
const PAGE = 1000;
/** Problems reported in full; beyond this they are only counted (a broken chain can flag every later entry). */
const MAX_PROBLEMS = 100;

export function entryHash(prev: string, f: Record<string, string>): string {
  const body = [f.message, f.revision, f.actor, f.action, f.from, f.to, f.at, f.detail].join("\n");
  return createHash("sha1").update(`${prev}\n${body}`).digest("hex");
}

async function* entries(redis: Redis, key: string): AsyncGenerator<[string, Record<string, string>]> {
  let start = "-";
  for (;;) {
    const page = await redis.xrange(key, start, "+", "COUNT", PAGE);
    for (const [id, flat] of page) {
      const f: Record<string, string> = {};
      for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]!] = flat[i + 1]!;
      yield [id, f];
    }
    if (page.length < PAGE) return;
    start = `(${page[page.length - 1]![0]}`;
  }
}

export async function verifyAudit(redis: Redis): Promise<AuditReport> {
  const problems: AuditProblem[] = [];
  let hidden = 0;
  const report = (stream: string, entryId: string, problem: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push({ stream, entryId, problem });
    else hidden++;
  };
  const global = keys.auditAll();
  // message id -> hashes of its entries in the global chain, in order
  const byMessage = new Map<string, string[]>();
  let prev = "";
  let count = 0;
  for await (const [id, f] of entries(redis, global)) {
    count++;
    if ((f.prev ?? "") !== prev) report(global, id, `chain broken: prev is ${f.prev || "(empty)"}, the entry before has ${prev || "(none)"} (an entry was removed or inserted)`);
    const expected = entryHash(f.prev ?? "", f);
    if (f.hash !== expected) report(global, id, "hash does not match the entry's fields (edited)");
    prev = f.hash ?? "";
    if (f.message) {
      const list = byMessage.get(f.message) ?? [];
      list.push(f.hash ?? "");
      byMessage.set(f.message, list);
    }
  }
  const head = await redis.get(keys.auditHead());
  if ((head ?? "") !== prev) report(global, "head", `the stored head ${head ?? "(none)"} is not the last entry's hash ${prev || "(none)"} (entries removed from the end)`);

  const ids = await redis.zrange(keys.messagesByTime(), "0", "-1");
  for (const messageId of new Set([...ids, ...byMessage.keys()])) {
    const stream = keys.audit(messageId);
    const expected = byMessage.get(messageId) ?? [];
    let i = 0;
    for await (const [id, f] of entries(redis, stream)) {
      if (f.hash !== expected[i]) report(stream, id, `differs from the global trail at position ${i + 1}`);
      i++;
    }
    if (i !== expected.length) report(stream, "end", `holds ${i} entries, the global trail ${expected.length} for message ${messageId}`);
  }
  if (hidden) problems.push({ stream: global, entryId: "…", problem: `${hidden} more problems not listed` });
  return { ok: problems.length === 0, entries: count, messages: byMessage.size, head, problems };
}
