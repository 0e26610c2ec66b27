/**
 * Checks the tamper-evident audit trail (audit/chain.ts has the two links it is made of).
 *
 * - The hash chain: every entry of the global stream `{airlock}:audit` carries `prev` (the hash
 *   of the entry before it) and its own `hash`; a removed or inserted entry breaks `prev`, a cut
 *   tail no longer matches the stored head. Anyone can check this link, and anyone who can write
 *   to Redis can forge it.
 * - The seals: HMAC-SHA-256 with AUDIT_SECRET, chained entry to entry. Only a holder of the secret
 *   can check them, and nobody without it can forge them: an edited, inserted, removed or
 *   re-written sealed entry is reported even when its hash chain was recomputed. Entries written
 *   in the last moments are not sealed yet: they are counted, and reported once older than
 *   `graceMs` (nobody sealed them: written by someone without the secret, or no Airlock process
 *   ran since). A rewrite of the whole trail with fresh seals is impossible without the secret; a
 *   truncation together with its seals is caught against an anchor (a seal head the sealer logged).
 * - Each per-message stream must hold exactly the global entries of that message.
 */
import type { Redis } from "ioredis";
import { keys } from "../store/keys.js";
import { entryHash, entrySeal, flatFields, type AuditFields } from "./chain.js";
import { parseSealHead } from "./sealer.js";

export { entryHash } from "./chain.js";

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
  /** Entries whose seal verified, and entries not sealed yet (the newest ones). */
  sealed: number;
  unsealed: number;
  /** The newest seal: "<entry id> <seal>", an anchor for a later check. */
  sealHead: string | null;
  problems: AuditProblem[];
}

export interface VerifyOptions {
  /** AUDIT_SECRET. */
  secret: string;
  /** An entry not sealed this long after it was written is a problem. Default 60 s. */
  graceMs?: number;
  /** A seal head noted earlier ("<entry id> <seal>"): it must still be in the trail. */
  anchor?: string;
  now?: number;
}

/** Entries read per XRANGE call: bounded memory whatever the length of the trail. */
const PAGE = 1000;
/** Problems reported in full; beyond this they are only counted (a broken chain can flag every later entry). */
const MAX_PROBLEMS = 100;

async function* entries(redis: Redis, key: string): AsyncGenerator<[string, AuditFields]> {
  let start = "-";
  for (;;) {
    const page = await redis.xrange(key, start, "+", "COUNT", PAGE);
    for (const [id, flat] of page) yield [id, flatFields(flat)];
    if (page.length < PAGE) return;
    start = `(${page[page.length - 1]![0]}`;
  }
}

/** The global stream's entries with their stored seals (null: none), a page of seals per round trip. */
async function* sealedEntries(redis: Redis): AsyncGenerator<[string, AuditFields, string | null]> {
  let batch: Array<[string, AuditFields]> = [];
  const flush = async function* () {
    const seals = batch.length ? await redis.hmget(keys.auditSeals(), ...batch.map(([id]) => id)) : [];
    for (let i = 0; i < batch.length; i++) yield [batch[i]![0], batch[i]![1], seals[i] ?? null] as [string, AuditFields, string | null];
    batch = [];
  };
  for await (const e of entries(redis, keys.auditAll())) {
    batch.push(e);
    if (batch.length === PAGE) yield* flush();
  }
  yield* flush();
}

/** Milliseconds since the epoch of a stream entry id ("<ms>-<seq>"). */
const idTime = (id: string) => Number(id.split("-")[0]);
/** Stream order: whether entry id `a` comes at or before `b`. */
const atOrBefore = (a: string, b: string) => {
  const [am, as] = a.split("-").map(Number) as [number, number];
  const [bm, bs] = b.split("-").map(Number) as [number, number];
  return am < bm || (am === bm && as <= bs);
};
/** Unsealed entries past the grace kept to look at again once the walk is done (the rest are only counted). */
const MAX_LATE = 1000;

export async function verifyAudit(redis: Redis, opts: VerifyOptions): Promise<AuditReport> {
  const now = opts.now ?? Date.now();
  const graceMs = opts.graceMs ?? 60_000;
  const problems: AuditProblem[] = [];
  let hidden = 0;
  const report = (stream: string, entryId: string, problem: string) => {
    if (problems.length < MAX_PROBLEMS) problems.push({ stream, entryId, problem });
    else hidden++;
  };
  const global = keys.auditAll();
  // The heads first, in one transaction, then the walk: entries appended meanwhile (the service
  // keeps running) come after the heads read, and are not mistaken for a cut.
  const [[, time], [, head], [, sealHead], [, sealCount]] = (await redis.multi().time().get(keys.auditHead()).get(keys.auditSealHead()).hlen(keys.auditSeals()).exec()) as [
    [null, [string, string]],
    [null, string | null],
    [null, string | null],
    [null, number],
  ];
  const readAt = Number(time[0]) * 1000 + Math.floor(Number(time[1]) / 1000);
  let headSeen = head === null;
  let sealHeadSeen = sealHead === null;
  // Entries up to the seal head read above were sealed before the walk began; the ones after it may
  // be sealed at any moment of the walk (a sealer catching up), so they are judged at its end.
  const sealedBefore = parseSealHead(sealHead)?.id ?? null;
  const late: string[] = [];
  let lateUncounted = 0;
  let lastId = "0-0";
  // message id -> hashes of its entries in the global chain, in order
  const byMessage = new Map<string, string[]>();
  let prev = "";
  let count = 0;
  let sealed = 0;
  let unsealed = 0;
  let prevSeal = "";
  let anchorFound = false;
  for await (const [id, f, seal] of sealedEntries(redis)) {
    count++;
    if ((f.prev ?? "") !== prev) report(global, id, `chain broken: prev is ${f.prev || "(empty)"}, the entry before has ${prev || "(none)"} (an entry was removed or inserted)`);
    if (f.hash !== entryHash(f.prev ?? "", f)) report(global, id, "hash does not match the entry's fields (edited)");
    prev = f.hash ?? "";
    lastId = id;
    // After the stored head, only entries written after it was read belong (the service kept writing).
    if (headSeen && head !== null && idTime(id) < readAt) report(global, id, "after the stored head, yet written before it was read (appended outside the chain)");
    if (f.hash === head) headSeen = true;
    if (seal === null) {
      unsealed++;
      if (sealedBefore !== null && atOrBefore(id, sealedBefore)) report(global, id, "not sealed, though the seals reach past it (its seal was removed, or it was inserted)");
      else if (now - idTime(id) > graceMs) {
        if (late.length < MAX_LATE) late.push(id);
        else lateUncounted++;
      }
    } else {
      if (entrySeal(opts.secret, prevSeal, id, f) !== seal) report(global, id, "seal does not match (the entry, or one before it, was edited, inserted or removed; or AUDIT_SECRET differs)");
      else sealed++;
      // The next entry was sealed after this stored seal: chaining on it reports each edit once.
      prevSeal = seal;
      const here = `${id} ${seal}`;
      if (here === sealHead) sealHeadSeen = true;
      if (here === opts.anchor) anchorFound = true;
    }
    if (f.message) {
      const list = byMessage.get(f.message) ?? [];
      list.push(f.hash ?? "");
      byMessage.set(f.message, list);
    }
  }
  // Past the grace and unsealed during the walk: sealed since (a sealer was catching up), or not.
  const finalHead = parseSealHead(await redis.get(keys.auditSealHead()))?.id ?? null;
  for (const id of late) {
    if (finalHead !== null && atOrBefore(id, finalHead)) continue;
    report(global, id, `not sealed ${Math.round((now - idTime(id)) / 1000)} s after it was written (no Airlock process has run since, or the sealers refuse: see their log)`);
  }
  if (lateUncounted > 0) report(global, "…", `${lateUncounted} more entries not sealed past the grace`);
  if (!headSeen) report(global, "head", `the stored head ${head} is no entry's hash (entries removed from the end)`);
  else if (head === null && count > 0) report(global, "head", "the stored head is gone (removed)");
  if (!sealHeadSeen) report(global, "seal head", `the stored seal head ${sealHead} is no sealed entry of the trail (sealed entries removed)`);
  if (count - unsealed < sealCount) report(global, "seals", `${sealCount} seals were stored, the trail holds ${count - unsealed} sealed entries (sealed entries removed)`);
  if (opts.anchor !== undefined && !anchorFound) {
    const a = parseSealHead(opts.anchor);
    report(global, a?.id ?? "anchor", `the anchor "${opts.anchor}" is not in the trail (the trail was cut or rewritten since it was noted)`);
  }

  const ids = await redis.zrange(keys.messagesByTime(), "0", "-1");
  for (const messageId of new Set([...ids, ...byMessage.keys()])) {
    const stream = keys.audit(messageId);
    const expected = byMessage.get(messageId) ?? [];
    let i = 0;
    for await (const [id, f] of entries(redis, stream)) {
      // Written after the walk of the global stream (same script, same clock): not part of this check.
      if (i >= expected.length && idTime(id) >= idTime(lastId)) break;
      if (f.hash !== expected[i]) report(stream, id, `differs from the global trail at position ${i + 1}`);
      i++;
    }
    if (i !== expected.length) report(stream, "end", `holds ${i} entries, the global trail ${expected.length} for message ${messageId}`);
  }
  if (hidden) problems.push({ stream: global, entryId: "…", problem: `${hidden} more problems not listed` });
  return { ok: problems.length === 0, entries: count, messages: byMessage.size, head, sealed, unsealed, sealHead, problems };
}
