/**
 * Pure pieces of directory-group resolution, kept apart from the LDAP client so they can be tested
 * without a server:
 * - RFC 4514 distinguished names: strict parsing (a malformed DN is refused before anything is sent),
 *   escaping and a normalised form used as the identity of a group in the cycle guard;
 * - RFC 4515 filters: every value that goes into a search filter passes `escapeFilterValue`; a
 *   filter from the settings is checked by `filterSyntaxError` (ldapts' parser is lenient);
 * - the walk over nested groups with its cycle guard;
 * - a compact set of 64-bit fingerprints, to count distinct addresses without keeping them.
 */

/** A DN or a filter value was refused; the LDAP layer turns it into `DirectoryError("invalid_dn")`. */
export class DnSyntaxError extends Error {
  override readonly name = "DnSyntaxError";
  constructor(
    readonly input: string,
    readonly reason: string,
  ) {
    super(`malformed DN (${reason})`);
  }
}

/** One attribute type and value of an RDN. `value` is unescaped; a `#hex` value is kept as written, lower-cased. */
export interface Ava {
  type: string;
  value: string;
}
export type Rdn = Ava[];

const DESCR = /^[A-Za-z][A-Za-z0-9-]*/;
const NUMERICOID = /^(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+/;
/** Characters that may follow a backslash themselves (RFC 4514 `special` and the backslash). */
const ESCAPABLE = new Set(['"', "+", ",", ";", "<", ">", " ", "#", "=", "\\"]);
/** Characters that must not appear unescaped anywhere in a string value (RFC 4514 `escaped` minus the separators). */
const MUST_ESCAPE = new Set(['"', ";", "<", ">", "\0"]);
const HEX2 = /^[0-9A-Fa-f]{2}$/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Parses a DN in the RFC 4514 string representation. Strict: no spaces around separators, no `;`
 * separator (RFC 1779), no unescaped `"` `;` `<` `>` NUL, no unescaped leading space or `#` or
 * trailing space in a value, valid UTF-8 in hex escapes. The empty string is the (valid) empty DN.
 */
export function parseDn(input: string): Rdn[] {
  if (typeof input !== "string") throw new DnSyntaxError(String(input), "not a string");
  if (LONE_SURROGATE.test(input)) throw new DnSyntaxError(input, "lone surrogate");
  if (input.length > 4096) throw new DnSyntaxError(input.slice(0, 64), "longer than 4096 characters");
  const rdns: Rdn[] = [];
  if (input === "") return rdns;
  let i = 0;
  const fail = (reason: string): never => {
    throw new DnSyntaxError(input, `${reason} at position ${i}`);
  };
  for (;;) {
    const rdn: Rdn = [];
    for (;;) {
      // attributeType
      const rest = input.slice(i);
      const m = DESCR.exec(rest) ?? NUMERICOID.exec(rest);
      if (!m) fail("attribute type expected");
      const type = m![0];
      i += type.length;
      if (input[i] !== "=") fail("'=' expected");
      i += 1;
      const value = input[i] === "#" ? parseHexValue() : parseStringValue();
      rdn.push({ type, value });
      if (input[i] === "+") {
        i += 1;
        continue;
      }
      break;
    }
    rdns.push(rdn);
    if (i === input.length) return rdns;
    if (input[i] !== ",") fail(`unexpected '${input[i]}'`);
    i += 1;
    if (i === input.length) fail("empty RDN after ','");
  }

  function parseHexValue(): string {
    const start = i;
    i += 1;
    while (i < input.length && HEX2.test(input.slice(i, i + 2))) i += 2;
    if (i === start + 1) fail("hex pairs expected after '#'");
    if (i < input.length && input[i] !== "," && input[i] !== "+") fail("invalid hexstring");
    return input.slice(start, i).toLowerCase();
  }

  function parseStringValue(): string {
    let out = "";
    let bytes: number[] = [];
    const flush = () => {
      if (bytes.length === 0) return;
      try {
        out += new TextDecoder("utf-8", { fatal: true }).decode(Uint8Array.from(bytes));
      } catch {
        fail("escaped bytes are not UTF-8");
      }
      bytes = [];
    };
    const start = i;
    let lastEscaped = false;
    while (i < input.length) {
      const c = input[i]!;
      if (c === "," || c === "+") break;
      if (c === "\\") {
        const next = input[i + 1];
        if (next !== undefined && ESCAPABLE.has(next)) {
          flush();
          out += next;
          i += 2;
        } else if (HEX2.test(input.slice(i + 1, i + 3))) {
          bytes.push(Number.parseInt(input.slice(i + 1, i + 3), 16));
          i += 3;
        } else {
          fail("invalid escape");
        }
        lastEscaped = true;
        continue;
      }
      if (MUST_ESCAPE.has(c)) fail(`unescaped ${c === "\0" ? "NUL" : `'${c}'`}`);
      if (i === start && c === " ") fail("unescaped leading space");
      flush();
      out += c;
      lastEscaped = false;
      i += 1;
    }
    flush();
    if (i > start && input[i - 1] === " " && !lastEscaped) fail("unescaped trailing space");
    return out;
  }
}

/** Escapes an attribute value for a DN string (RFC 4514 section 2.4). */
export function escapeDnValue(value: string): string {
  let out = "";
  for (let k = 0; k < value.length; k++) {
    const c = value[k]!;
    if (c === "\0") out += "\\00";
    else if ('"+,;<>\\'.includes(c)) out += `\\${c}`;
    else if ((k === 0 && (c === " " || c === "#")) || (k === value.length - 1 && c === " ")) out += `\\${c}`;
    else out += c;
  }
  return out;
}

function formatAva(a: Ava): string {
  return `${a.type}=${a.value.startsWith("#") && /^#(?:[0-9a-f]{2})+$/.test(a.value) ? a.value : escapeDnValue(a.value)}`;
}

/** The string form of parsed RDNs, escaped the RFC 4514 way (multi-valued RDNs keep their order). */
export function formatDn(rdns: Rdn[]): string {
  return rdns.map((rdn) => rdn.map(formatAva).join("+")).join(",");
}

/**
 * A normalised DN: attribute types and values lower-cased, insignificant spaces folded, AVAs of a
 * multi-valued RDN sorted, one canonical escaping. Two spellings of one DN (`CN=Staff,DC=Corp` and
 * `cn=staff,dc=corp`, `cn=a\,b` and `cn=a\2Cb`) normalise alike. It approximates the directory's
 * distinguishedNameMatch for the usual case-insensitive naming attributes (cn, ou, dc, uid); it is
 * the identity used by the cycle guard, never sent to the server. Throws DnSyntaxError.
 */
export function normalizeDn(dn: string): string {
  const rdns = parseDn(dn).map((rdn) =>
    rdn
      .map((a) => ({ type: a.type.toLowerCase(), value: a.value.normalize("NFC").toLowerCase().replace(/\s+/g, " ").trim() }))
      .sort((x, y) => (x.type < y.type ? -1 : x.type > y.type ? 1 : x.value < y.value ? -1 : x.value > y.value ? 1 : 0)),
  );
  return formatDn(rdns);
}

/**
 * Escapes a value for an LDAP search filter (RFC 4515 section 3): `*`, `(`, `)`, `\` and NUL become
 * `\2a`, `\28`, `\29`, `\5c`, `\00`. Other characters, non-ASCII included, stay as they are (valid
 * UTF-8 on the wire); escaping them too would break ldapts' filter parser, which decodes each `\xx`
 * as one UTF-16 unit rather than as UTF-8 bytes.
 */
export function escapeFilterValue(value: string): string {
  let out = "";
  for (const c of value) {
    switch (c) {
      case "*":
        out += "\\2a";
        break;
      case "(":
        out += "\\28";
        break;
      case ")":
        out += "\\29";
        break;
      case "\\":
        out += "\\5c";
        break;
      case "\0":
        out += "\\00";
        break;
      default:
        out += c;
    }
  }
  return out;
}

/**
 * An attribute name usable in a filter built here: a plain name (`mail`, `userPrincipalName`), no
 * options. Numeric OIDs are refused too: ldapts' filter parser reads attribute names as `[\w-]+`.
 */
export function isAttributeName(name: string): boolean {
  return /^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(name);
}

/**
 * Checks a filter string against RFC 4515 (and returns why it is not one, or null). ldapts' own
 * parser is lenient (it accepts `(&(a=b)` and drops what it does not understand), so a settings
 * filter is checked here first: a typo must be an error, not a different filter.
 */
export function filterSyntaxError(f: string): string | null {
  let i = 0;
  const ATTR = /^(?:[A-Za-z][A-Za-z0-9-]*|(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+)(?:;[A-Za-z0-9-]+)*/;
  const RULE = /^(?:[A-Za-z][A-Za-z0-9-]*|(?:0|[1-9][0-9]*)(?:\.(?:0|[1-9][0-9]*))+)/;
  class Bad extends Error {}
  const fail = (why: string): never => {
    throw new Bad(`${why} at position ${i}`);
  };
  const expect = (c: string) => {
    if (f[i] !== c) fail(`'${c}' expected`);
    i += 1;
  };
  /** An assertion value up to the closing parenthesis; `*` allowed (substring) or not. */
  const value = (starsAllowed: boolean) => {
    while (i < f.length && f[i] !== ")") {
      const c = f[i]!;
      if (c === "\\") {
        if (!/^[0-9A-Fa-f]{2}$/.test(f.slice(i + 1, i + 3))) fail("invalid escape");
        i += 3;
        continue;
      }
      if (c === "(" || c === "\0") fail(`unescaped ${c === "(" ? "'('" : "NUL"}`);
      if (c === "*" && !starsAllowed) fail("unescaped '*'");
      i += 1;
    }
  };
  const item = () => {
    let hasAttr = false;
    if (f[i] !== ":") {
      const m = ATTR.exec(f.slice(i));
      if (!m) fail("attribute expected");
      i += m![0].length;
      hasAttr = true;
    }
    if (f[i] === ":") {
      // extensible: attr [":dn"] [":" rule] ":=" value, or [":dn"] ":" rule ":=" value
      if (/^:dn(?=:)/i.test(f.slice(i))) i += 3;
      let hasRule = false;
      if (f[i] === ":" && f[i + 1] !== "=") {
        i += 1;
        const m = RULE.exec(f.slice(i));
        if (!m) fail("matching rule expected");
        i += m![0].length;
        hasRule = true;
      }
      if (!hasAttr && !hasRule) fail("matching rule expected");
      expect(":");
      expect("=");
      value(false);
      return;
    }
    if (f[i] === "=") {
      i += 1;
      value(true);
      return;
    }
    if ((f[i] === "~" || f[i] === ">" || f[i] === "<") && f[i + 1] === "=") {
      i += 2;
      value(false);
      return;
    }
    fail("'=', '~=', '>=', '<=' or ':=' expected");
  };
  const filter = (): void => {
    expect("(");
    const c = f[i];
    if (c === "&" || c === "|") {
      i += 1;
      if (f[i] !== "(") fail("a filter expected after '&' or '|'");
      while (f[i] === "(") filter();
    } else if (c === "!") {
      i += 1;
      filter();
    } else {
      item();
    }
    expect(")");
  };
  try {
    filter();
    if (i !== f.length) fail("text after the filter");
    return null;
  } catch (e) {
    if (e instanceof Bad) return e.message;
    throw e;
  }
}

/** `(attr=value)` with the value escaped. The attribute name comes from settings and was checked by `isAttributeName`. */
export function equalityFilter(attribute: string, value: string): string {
  if (!isAttributeName(attribute)) throw new Error(`invalid attribute name: ${attribute}`);
  return `(${attribute}=${escapeFilterValue(value)})`;
}

/** `(|(a=v1)(a=v2)…)`, or the single term for one value. */
export function anyOfFilter(attribute: string, values: readonly string[]): string {
  if (values.length === 0) throw new Error("anyOfFilter needs at least one value");
  const terms = values.map((v) => equalityFilter(attribute, v));
  return terms.length === 1 ? terms[0]! : `(|${terms.join("")})`;
}

/**
 * ldapts' filter parser decodes `\xx` escapes one UTF-16 unit at a time, so `\c3\a9` would become
 * "Ã©" instead of "é". Settings filters (`enabledFilter`) may be written with such escapes: decode the
 * runs of escaped bytes ≥ 0x80 that form valid UTF-8 into the characters themselves first, which the
 * parser then keeps as they are. ASCII escapes (`\2a`, `\28`…) are left alone.
 */
export function decodeUtf8Escapes(filter: string): string {
  return filter.replace(/(?:\\[89a-fA-F][0-9a-fA-F])+/g, (run) => {
    const bytes = Uint8Array.from(run.split("\\").slice(1), (h) => Number.parseInt(h, 16));
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return run;
    }
  });
}

/**
 * A set of 64-bit fingerprints of strings (open addressing in a Uint32Array, at most half full):
 * 16–32 bytes per member instead of the string itself, so counting 100,000 distinct addresses
 * costs 2 MB (3 MB for a moment while the table doubles). The hash is seeded at random per set, so nobody can prepare two
 * addresses that collide; the chance of an accidental collision among n members is about
 * n²/2⁶⁵ (3·10⁻¹⁰ for 100,000, 3·10⁻⁸ for a million). A collision would make `add` answer
 * "already there" for a new member.
 */
export class FingerprintSet {
  private table: Uint32Array;
  private mask: number;
  private readonly seed: number;
  size = 0;

  constructor(initialCapacity = 1024, seed = (Math.random() * 0x1_0000_0000) >>> 0) {
    let cap = 16;
    while (cap < initialCapacity * 2) cap *= 2;
    this.table = new Uint32Array(cap * 2);
    this.mask = cap - 1;
    this.seed = seed;
  }

  /** Bytes held by the table. */
  get bytes(): number {
    return this.table.byteLength;
  }

  /** Adds the fingerprint of `s`; true when it was not there yet. */
  add(s: string): boolean {
    let h1 = 0xdeadbeef ^ this.seed;
    let h2 = 0x41c6ce57 ^ this.seed;
    for (let k = 0; k < s.length; k++) {
      const ch = s.charCodeAt(k);
      h1 = Math.imul(h1 ^ ch, 2654435761);
      h2 = Math.imul(h2 ^ ch, 1597334677);
    }
    h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
    h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
    h1 >>>= 0;
    h2 >>>= 0;
    if (h1 === 0 && h2 === 0) h2 = 1; // (0,0) marks an empty slot
    if (this.insert(h1, h2)) {
      this.size += 1;
      if (this.size * 2 > this.mask + 1) this.grow();
      return true;
    }
    return false;
  }

  private insert(h1: number, h2: number): boolean {
    const t = this.table;
    let slot = (h1 ^ Math.imul(h2, 0x9e3779b1)) & this.mask;
    for (;;) {
      const a = t[slot * 2]!;
      const b = t[slot * 2 + 1]!;
      if (a === 0 && b === 0) {
        t[slot * 2] = h1;
        t[slot * 2 + 1] = h2;
        return true;
      }
      if (a === h1 && b === h2) return false;
      slot = (slot + 1) & this.mask;
    }
  }

  private grow(): void {
    const old = this.table;
    this.table = new Uint32Array(old.length * 2);
    this.mask = this.mask * 2 + 1;
    for (let k = 0; k < old.length; k += 2) {
      const a = old[k]!;
      const b = old[k + 1]!;
      if (a !== 0 || b !== 0) this.insert(a, b);
    }
  }
}

/** Counts keys, each once when `dedupe` (by fingerprint), or every call when the caller knows they are distinct. */
export class DistinctCounter {
  private readonly seen: FingerprintSet | null;
  count = 0;
  constructor(dedupe: boolean) {
    this.seen = dedupe ? new FingerprintSet(1024) : null;
  }
  /** True when `key` is counted now (new, or no deduplication). */
  add(key: string): boolean {
    if (this.seen && !this.seen.add(key)) return false;
    this.count += 1;
    return true;
  }
}

/** Keeps a count and the first few examples of something (members without mail, invalid addresses). */
export class Tally {
  count = 0;
  readonly first: string[] = [];
  constructor(private readonly keep = 20) {}
  add(example: string): void {
    this.count += 1;
    if (this.first.length < this.keep) this.first.push(example);
  }
  toJSON(): { count: number; first: string[] } {
    return { count: this.count, first: [...this.first] };
  }
}

export interface GroupWalk {
  /** Every group reached, the root first, in depth-first discovery order, as the directory spells them. */
  groups: string[];
  /** Groups reached again while already on the path from the root to them: the target of each back edge, once. */
  cycles: string[];
}

/**
 * Depth-first walk over nested groups. `subgroupsOf(dn)` lists the groups that are direct members of
 * `dn` (the caller asks the directory). A group already visited is not expanded again (the cycle guard:
 * a set of normalised group DNs, small next to the members); a group reached again while it is still on
 * the current path closes a cycle and is reported in `cycles`; one reached again through a second,
 * parallel path (a diamond) is simply not walked twice. `maxGroups` bounds the walk.
 */
export async function walkGroups(
  root: string,
  subgroupsOf: (dn: string) => Promise<string[]>,
  opts: { maxGroups?: number; key?: (dn: string) => string } = {},
): Promise<GroupWalk> {
  const key = opts.key ?? normalizeDn;
  const maxGroups = opts.maxGroups ?? 10_000;
  const groups: string[] = [];
  const cycles: string[] = [];
  const cycleKeys = new Set<string>();
  const visited = new Set<string>();
  const onPath = new Set<string>();

  const visit = async (dn: string, k: string): Promise<void> => {
    visited.add(k);
    onPath.add(k);
    groups.push(dn);
    if (groups.length > maxGroups) throw new GroupLimitError(maxGroups);
    // The whole list of direct subgroups is read before descending: one paged search at a time per connection.
    const children = await subgroupsOf(dn);
    for (const child of children) {
      const ck = key(child);
      if (onPath.has(ck)) {
        if (!cycleKeys.has(ck)) {
          cycleKeys.add(ck);
          cycles.push(child);
        }
      } else if (!visited.has(ck)) {
        await visit(child, ck);
      }
    }
    onPath.delete(k);
  };
  await visit(root, key(root));
  return { groups, cycles };
}

export class GroupLimitError extends Error {
  override readonly name = "GroupLimitError";
  constructor(readonly maxGroups: number) {
    super(`more than ${maxGroups} nested groups`);
  }
}

/** Splits a list into chunks of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let k = 0; k < items.length; k += size) out.push(items.slice(k, k + size));
  return out;
}
