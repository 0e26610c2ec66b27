/**
 * What changed between two revisions of a message, as the approval request shows it: one entry
 * per changed field, each a short list of `+`/`-`/` ` lines. Bounded on purpose: a huge edit
 * (or a pasted 500 KB HTML body) must not turn into a huge email, so long unchanged runs are
 * collapsed, long lines are cut, the diff gives up early on wildly different bodies, and the
 * whole output is capped at MAX_DIFF_LINES.
 */
import { diffArrays } from "diff";
import type { FieldDiff } from "./notification-data.js";

export interface RevisionSnapshot {
  subject: string;
  text: string;
  /** The author's HTML, "" when there is none. */
  html: string;
  /** The Markdown source and its house template ("" for a text/HTML body; absent in snapshots from before Markdown). */
  markdown?: string;
  template?: string;
  from: string;
  /** The audience spec, or its JSON as stored in the message hash. */
  audience: string | { lists: string[]; addresses: string[] };
  recipientCount: number;
}

type DiffLine = FieldDiff["lines"][number];

/** Total lines in the result, the final "… (N more lines)" included. */
export const MAX_DIFF_LINES = 200;
/** Unchanged lines kept before and after each change. */
const CONTEXT = 3;
/** A longer line is cut: one minified HTML line can be the whole body. */
const MAX_LINE_CHARS = 300;
/**
 * Myers' diff costs O(D²) in the number of edits D: beyond 1,000 edits (or 250 ms) the middle is
 * shown as replaced instead, which the cap cuts anyway.
 */
const MAX_EDIT_LENGTH = 1000;
const DIFF_TIMEOUT_MS = 250;

const ELLIPSIS = "…";
const numberFormat = new Intl.NumberFormat("en-US");

/**
 * Changed fields, in the order Subject, Sender, Template, Audience, Recipients, Markdown, Text,
 * HTML: the one-line fields first, so that the cap can only ever shorten a body diff, never hide an
 * audience change. A Markdown body is compared as its source (its parts are built from it).
 */
export function diffRevisions(prevIn: RevisionSnapshot, curIn: RevisionSnapshot): FieldDiff[] {
  const [prev, cur] = [normalize(prevIn), normalize(curIn)];
  const fields: FieldDiff[] = [];
  const add = (field: string, lines: DiffLine[]) => {
    if (lines.length > 0) fields.push({ field, lines });
  };
  add("Subject", replaced(prev.subject, cur.subject));
  add("Sender", replaced(prev.from, cur.from));
  add("Template", replaced(prev.template ?? "", cur.template ?? ""));
  add("Audience", audienceLines(prev.audience, cur.audience));
  add("Recipients", prev.recipientCount === cur.recipientCount ? [] : [
    { op: "-", text: numberFormat.format(prev.recipientCount) },
    { op: "+", text: numberFormat.format(cur.recipientCount) },
  ]);
  add("Markdown", lineDiff(prev.markdown ?? "", cur.markdown ?? ""));
  add("Text", lineDiff(prev.text, cur.text));
  add("HTML", lineDiff(prev.html, cur.html));
  return cap(fields, MAX_DIFF_LINES);
}

/**
 * Snapshots come from JSON stored by a Lua script: tolerate a null `html` or a missing field
 * rather than throw while building an approval request.
 */
function normalize(s: RevisionSnapshot): RevisionSnapshot {
  const str = (v: unknown) => (typeof v === "string" ? v : v == null ? "" : String(v));
  return {
    subject: str(s.subject),
    text: str(s.text),
    html: str(s.html),
    markdown: str(s.markdown),
    template: str(s.template),
    from: str(s.from),
    audience: s.audience ?? "",
    recipientCount: Number(s.recipientCount) || 0,
  };
}

function replaced(prev: string, cur: string): DiffLine[] {
  return prev === cur ? [] : [{ op: "-", text: clip(prev) }, { op: "+", text: clip(cur) }];
}

/** Line diff with CONTEXT unchanged lines around each change; longer unchanged runs become " …". */
function lineDiff(prev: string, cur: string): DiffLine[] {
  const a = splitLines(prev);
  const b = splitLines(cur);
  // The common head and tail are cut off first: a typical edit leaves Myers only a few lines.
  let head = 0;
  while (head < a.length && head < b.length && a[head] === b[head]) head++;
  let tail = 0;
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++;
  if (head === a.length && head === b.length) return [];

  const flat: DiffLine[] = a.slice(0, head).map((text) => ({ op: " ", text }));
  const [oldMiddle, newMiddle] = [a.slice(head, a.length - tail), b.slice(head, b.length - tail)];
  const changes = diffArrays(oldMiddle, newMiddle, { maxEditLength: MAX_EDIT_LENGTH, timeout: DIFF_TIMEOUT_MS });
  if (changes) {
    for (const c of changes) {
      const op = c.added ? "+" : c.removed ? "-" : " ";
      for (const text of c.value) flat.push({ op, text });
    }
  } else {
    // Too different to be worth diffing: the middle is shown as replaced (and the cap cuts it).
    for (const text of oldMiddle) flat.push({ op: "-", text });
    for (const text of newMiddle) flat.push({ op: "+", text });
  }
  for (const text of b.slice(b.length - tail)) flat.push({ op: " ", text });
  return withContext(flat).map((l) => ({ op: l.op, text: clip(l.text) }));
}

function withContext(flat: DiffLine[]): DiffLine[] {
  const out: DiffLine[] = [];
  let i = 0;
  while (i < flat.length) {
    if (flat[i]!.op !== " ") {
      out.push(flat[i]!);
      i++;
      continue;
    }
    let end = i;
    while (end < flat.length && flat[end]!.op === " ") end++;
    const run = flat.slice(i, end);
    const keepBefore = i === 0 ? 0 : CONTEXT; // after the previous change
    const keepAfter = end === flat.length ? 0 : CONTEXT; // before the next change
    if (run.length <= keepBefore + keepAfter + 1) {
      out.push(...run); // collapsing would not save a line
    } else {
      out.push(...run.slice(0, keepBefore), { op: " ", text: ELLIPSIS }, ...run.slice(run.length - keepAfter));
    }
    i = end;
  }
  return out;
}

function audienceLines(prevRaw: RevisionSnapshot["audience"], curRaw: RevisionSnapshot["audience"]): DiffLine[] {
  const prev = parseAudience(prevRaw);
  const cur = parseAudience(curRaw);
  if (!prev || !cur) {
    // Not a spec we can read: say that it changed, as text.
    const [p, c] = [raw(prevRaw), raw(curRaw)];
    return replaced(p, c);
  }
  const lines: DiffLine[] = [];
  const prevLists = new Set(prev.lists);
  const curLists = new Set(cur.lists);
  for (const name of prev.lists) if (!curLists.has(name)) lines.push({ op: "-", text: `list ${clip(name)}` });
  for (const name of cur.lists) if (!prevLists.has(name)) lines.push({ op: "+", text: `list ${clip(name)}` });

  // Addresses are counted, not listed: the email goes to approvers, not to an address book.
  const prevAddr = new Set(prev.addresses.map((a) => a.toLowerCase()));
  const curAddr = new Set(cur.addresses.map((a) => a.toLowerCase()));
  const removed = [...prevAddr].filter((a) => !curAddr.has(a)).length;
  const added = [...curAddr].filter((a) => !prevAddr.has(a)).length;
  if (removed > 0 || added > 0) {
    lines.push({ op: "-", text: `${plural(prevAddr.size, "explicit address", "explicit addresses")}` });
    lines.push({ op: "+", text: `${plural(curAddr.size, "explicit address", "explicit addresses")} (${added} added, ${removed} removed)` });
  }
  return lines;
}

function parseAudience(a: RevisionSnapshot["audience"]): { lists: string[]; addresses: string[] } | null {
  let v: unknown = a;
  if (typeof a === "string") {
    try {
      v = JSON.parse(a);
    } catch {
      return null;
    }
  }
  if (typeof v !== "object" || v === null) return null;
  const { lists, addresses } = v as { lists?: unknown; addresses?: unknown };
  const [l, addr] = [stringList(lists), stringList(addresses)];
  return l && addr ? { lists: l, addresses: addr } : null;
}

/** A list of strings; missing, or an empty object (how Lua's cjson writes an empty array), is []. */
function stringList(x: unknown): string[] | null {
  if (x === undefined || x === null) return [];
  if (Array.isArray(x)) return x.every((s) => typeof s === "string") ? x : null;
  return typeof x === "object" && Object.keys(x).length === 0 ? [] : null;
}

function raw(a: RevisionSnapshot["audience"]): string {
  return typeof a === "string" ? a : JSON.stringify(a);
}

/** Keeps the first `max - 1` lines and ends with "… (N more lines)" when there are more. */
function cap(fields: FieldDiff[], max: number): FieldDiff[] {
  const total = fields.reduce((n, f) => n + f.lines.length, 0);
  if (total <= max) return fields;
  const out: FieldDiff[] = [];
  let budget = max - 1;
  for (const f of fields) {
    if (budget <= 0) break;
    out.push({ field: f.field, lines: f.lines.slice(0, budget) });
    budget -= Math.min(budget, f.lines.length);
  }
  const shown = max - 1;
  out[out.length - 1]!.lines.push({ op: " ", text: `${ELLIPSIS} (${numberFormat.format(total - shown)} more lines)` });
  return out;
}

function splitLines(s: string): string[] {
  if (s === "") return [];
  return s.replace(/\r\n?/g, "\n").replace(/\n$/, "").split("\n");
}

function clip(s: string): string {
  // Code points, not UTF-16 units: never cut an emoji in half.
  const chars = Array.from(s);
  return chars.length <= MAX_LINE_CHARS ? s : chars.slice(0, MAX_LINE_CHARS).join("") + ELLIPSIS;
}

function plural(n: number, one: string, many: string): string {
  return `${numberFormat.format(n)} ${n === 1 ? one : many}`;
}
