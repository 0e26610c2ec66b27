/**
 * Resolves a directory group (LDAP) into recipient addresses, streamed in batches, for an audience
 * `{name, directoryGroup: "<DN>"}` that is then frozen like any other. A standalone building block:
 * nothing here is wired into the service, the HTTP API or the configuration yet.
 *
 * Client: `ldapts`, pinned to 8.2.0 in package.json. ldapts 9 declares `engines.node >= 22` and this
 * project runs on Node 20.20; the 8.x line declares `>= 20` (checked in node_modules/ldapts/package.json).
 *
 * How members are found (tried against OpenLDAP 2.5 with the memberof overlay, and what Active
 * Directory does natively):
 * 1. The group entry is read once (base scope) to check that it exists and is a group.
 * 2. Nested groups are walked in the client, depth first, with a cycle guard (a set of normalised group
 *    DNs): the direct subgroups of a group G are the entries `(&(memberOf=G)(|(objectClass=group…)))`.
 *    The server-side shortcuts for nesting do not work on OpenLDAP (checked on these machines earlier,
 *    see the shared toolchain notes): AD's "in chain" matching rule (1.2.840.113556.1.4.1941) silently
 *    matches nothing there, and the dynlist overlay's nested memberOf does not finish on 100,000 members.
 * 3. The people are read with paged searches under the base DN:
 *    `(&(|(memberOf=G1)…(memberOf=Gn))<enabledFilter>)`, asking for the mail attribute and objectClass
 *    (groups are skipped on the client: OpenLDAP evaluates `(objectClass=group)`, a class its schema
 *    lacks, as Undefined, so a negated class filter would match nobody). The server returns each entry
 *    once however many of the groups it belongs to, applies the enabled filter itself, and sends
 *    pages of `pageSize` entries; each page's new addresses become one batch for the caller, so
 *    memory holds one page, never the group. Distinct addresses are counted by 64-bit fingerprints
 *    (16–32 bytes each), not kept. With an enabled filter, a second paged search without it (asking
 *    for objectClass only) counts all members; disabled = members − enabled.
 * Why not read the group's `member` values and look each member up: a 100,000-member group is one
 * attribute of 100,000 values (one reply held whole on OpenLDAP; AD needs ranged retrieval
 * `member;range=0-1499`), and then every member still has to be fetched for its mail and state:
 * 100,000 base-scope reads, or about 1,000 searches with OR-filters of escaped DNs on
 * `entryDN`/`distinguishedName`, where one paged search over memberOf does it. Nor does the client
 * need a set of member DNs to deduplicate people: the server returns each entry once. `memberOf` is
 * maintained natively by Active
 * Directory and by 389-DS/FreeIPA, and by OpenLDAP's memberof overlay. Limits, by design: members
 * outside the base DN are not seen; AD's primary-group membership (`primaryGroupID`, e.g. Domain Users)
 * carries no memberOf; referrals are not chased. A group that has member values while no entry carries
 * `memberOf` for it (overlay missing, data loaded without it, members outside the base) is refused
 * (`inconsistent`) rather than resolved to nobody.
 *
 * Injection: a group DN is parsed strictly (RFC 4514) before anything is sent; every value put into a
 * filter is escaped (RFC 4515, `escapeFilterValue`); attribute names from the settings must be plain
 * names or OIDs; the settings' `enabledFilter` is parsed once, up front.
 */
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import type { ConnectionOptions } from "node:tls";
import {
  AdminLimitExceededError,
  Client,
  FilterParser,
  InappropriateAuthError,
  InvalidCredentialsError,
  InvalidDNSyntaxError,
  NoSuchObjectError,
  ResultCodeError,
  SizeLimitExceededError,
  TimeLimitExceededError,
  type Entry,
} from "ldapts";
import { normalizeAddress } from "../domain/addresses.js";
import {
  anyOfFilter,
  chunks,
  decodeUtf8Escapes,
  DistinctCounter,
  DnSyntaxError,
  equalityFilter,
  filterSyntaxError,
  FingerprintSet,
  GroupLimitError,
  isAttributeName,
  normalizeDn,
  parseDn,
  Tally,
  walkGroups,
} from "./group-resolution.js";

export interface LdapDirectorySettings {
  /** `ldap://host:389` (plain, or StartTLS with `startTls`) or `ldaps://host:636`. */
  url: string;
  /** Upgrade an `ldap://` connection with StartTLS before binding. Refused with `ldaps://`. */
  startTls?: boolean;
  /** TLS for `ldaps://` and StartTLS: the CA(s) to trust (PEM). The server certificate is always verified. */
  tls?: { ca?: string | Buffer | Array<string | Buffer>; servername?: string };
  bindDn: string;
  /** The bind password, or… */
  bindPassword?: string;
  /** …a file holding it (read at each resolution, so a rotated secret is picked up; one trailing newline is dropped). */
  bindPasswordFile?: string;
  /** Where members are searched (subtree). */
  baseDn: string;
  /** Default "mail". The first value is used. */
  mailAttribute?: string;
  /** Default "member": the group's member attribute (used to tell an empty group from a missing memberOf). */
  memberAttribute?: string;
  /** Default "memberOf": the attribute the directory maintains on members, pointing at their groups. */
  memberOfAttribute?: string;
  /** Object classes that make an entry a group. Default groupOfNames, groupOfUniqueNames, group (AD). */
  groupObjectClasses?: string[];
  /**
   * An LDAP filter matching ENABLED accounts, e.g. `(!(pwdAccountLockedTime=*))` or AD's
   * `(!(userAccountControl:1.2.840.113556.1.4.803:=2))`. Default: none (every member is enabled).
   */
  enabledFilter?: string;
  /** Entries per page (and so addresses per batch at most). Default 500. */
  pageSize?: number;
  /** Per operation (connect, bind, each page) in milliseconds. Default 10,000. */
  timeoutMs?: number;
  /** Upper bound on the groups walked (root and nested). Default 10,000. */
  maxGroups?: number;
}

export const DIRECTORY_ERRORS = {
  invalid_dn: "The group DN is not a valid distinguished name (RFC 4514).",
  invalid_settings: "The directory settings are invalid.",
  unavailable: "The directory could not be reached or did not answer in time.",
  bind_failed: "The directory refused the bind DN and password.",
  no_such_group: "There is no such group in the directory.",
  limit_exceeded: "The directory stopped the search at one of its limits (size, time, administrative), or the group nests too many groups.",
  inconsistent: "The group has members but no entry under the base DN names it in memberOf: nothing is resolved.",
  refused: "The directory refused an operation.",
} as const;

export type DirectoryErrorCode = keyof typeof DIRECTORY_ERRORS;

export class DirectoryError extends Error {
  override readonly name = "DirectoryError";
  constructor(
    readonly code: DirectoryErrorCode,
    message: string,
    /** The group being resolved, as given. */
    readonly group?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface GroupResolution {
  /** The group's DN as the directory spells it. */
  group: string;
  /** When the resolution started (ISO 8601): the directory is read as of about then. */
  resolvedAt: string;
  /** Distinct lower-cased addresses handed to `onBatch` (each address exactly once); with `distinctAddresses: false`, the addresses handed over. */
  recipients: number;
  /** Enabled members without a value in the mail attribute: how many, and the first 20 DNs. */
  withoutMail: { count: number; first: string[] };
  /** Enabled members whose mail value is not an acceptable address (see domain/addresses): how many, first 20 as "DN: reason". */
  invalidMail: { count: number; first: string[] };
  /** Distinct people (non-group entries) in the group and its nested groups, enabled or not. */
  members: number;
  /** Members the enabled filter does not match (or cannot evaluate): excluded. */
  disabled: number;
  /** The groups reached through nesting (the root excluded), as the directory spells them. */
  nestedGroups: string[];
  /** Groups that were reached again while already on the nesting path (each closes a cycle; walked once). */
  cycles: string[];
  /** How many times `onBatch` was called. */
  batches: number;
  durationMs: number;
}

export interface ResolveGroupOptions {
  /**
   * Default true: every address is handed to `onBatch` once (64-bit fingerprints of each, 16-32 bytes
   * an address, kept for the resolution). false, for a consumer that deduplicates itself (the audience
   * store does, in Redis): nothing grows with the group; an address two entries share (rare: shared
   * mailboxes) comes twice, and `recipients` counts addresses handed over, not distinct ones.
   */
  distinctAddresses?: boolean;
}

/** Receives each page's new addresses; resolution waits for it, so a slow consumer slows the reads instead of piling up pages. */
export type BatchCallback = (addresses: string[]) => void | Promise<void>;

const DEFAULT_GROUP_CLASSES = ["groupOfNames", "groupOfUniqueNames", "group"];
/** memberOf terms per search: beyond this, the closure is searched in several passes (deduplicated by fingerprint). */
const GROUPS_PER_SEARCH = 100;

interface Resolved {
  url: string;
  startTls: boolean;
  tls: ConnectionOptions;
  bindDn: string;
  baseDn: string;
  mail: string;
  member: string;
  memberOf: string;
  groupClasses: string[];
  groupClassFilter: string;
  enabledFilter: string | null;
  pageSize: number;
  timeoutMs: number;
  maxGroups: number;
  /** The server-side time limit (whole seconds) sent with each search; ldapts would send 10 s otherwise. */
  timeLimitSeconds: number;
}

export class LdapDirectory {
  private readonly s: Resolved;

  /** Checks the settings; throws DirectoryError("invalid_settings"). Does not connect. */
  constructor(private readonly settings: LdapDirectorySettings) {
    this.s = checkSettings(settings);
  }

  /**
   * Resolves `groupDn` and its nested groups to the enabled members' addresses, calling `onBatch` with
   * each page's new distinct addresses (lower-cased), and returns the summary. Throws DirectoryError:
   * `invalid_dn` (before connecting), `unavailable`, `bind_failed`, `no_such_group`, `limit_exceeded`,
   * `inconsistent`, `refused`; every message names the group. After an error, batches already
   * delivered are not a complete audience: the caller discards them.
   */
  async resolveGroup(groupDn: string, onBatch: BatchCallback, opts: ResolveGroupOptions = {}): Promise<GroupResolution> {
    const started = Date.now();
    const resolvedAt = new Date(started).toISOString();
    const named = quoteDn(groupDn);
    try {
      const rdns = parseDn(groupDn);
      if (rdns.length === 0) throw new DnSyntaxError(groupDn, "empty DN");
    } catch (e) {
      if (e instanceof DnSyntaxError) throw new DirectoryError("invalid_dn", `Group ${named} is not a valid DN: ${e.reason}.`, groupDn);
      throw e;
    }

    const password = await this.password(groupDn);
    const s = this.s;
    const client = new Client({
      url: s.url,
      timeout: s.timeoutMs,
      connectTimeout: s.timeoutMs,
      // ldapts speaks TLS from the first byte whenever tlsOptions are given, so only for ldaps://;
      // StartTLS gets them at the upgrade.
      ...(s.url.startsWith("ldaps:") ? { tlsOptions: s.tls } : {}),
    });
    let stage = "connecting";
    try {
      if (s.startTls) {
        stage = "upgrading the connection with StartTLS";
        await withTimeout(client.startTLS({ ...s.tls }), s.timeoutMs, "StartTLS");
      }
      stage = "connecting and binding";
      try {
        await client.bind(s.bindDn, password);
      } catch (e) {
        if (e instanceof InvalidCredentialsError || e instanceof InappropriateAuthError) {
          throw new DirectoryError("bind_failed", `Bind as ${quoteDn(s.bindDn)} refused (${describe(e)}) while resolving group ${named}.`, groupDn, { cause: e });
        }
        throw e;
      }

      stage = "reading the group";
      const group = await this.readGroup(client, groupDn);

      stage = "walking nested groups";
      const walk = await walkGroups(group.dn, (dn) => this.subgroupsOf(client, dn), { maxGroups: s.maxGroups, key: normalizeDnLoose });

      stage = "reading members";
      // Groups are told apart from people on the client, from objectClass: OpenLDAP evaluates
      // (objectClass=<a class its schema lacks>), e.g. AD's "group", as Undefined, and so would
      // (!(|…(objectClass=group))) be for every entry: a negated class filter would match nobody.
      const groupChunks = chunks(walk.groups, GROUPS_PER_SEARCH);
      // One search per chunk returns each entry once; with several chunks an entry may come back in
      // two of them, and only then are DNs fingerprinted to count people once.
      const severalChunks = groupChunks.length > 1;
      // Without it, memory stays flat however large the group (a million addresses' fingerprints are ~16-24 MB).
      const addresses = opts.distinctAddresses === false ? null : new FingerprintSet(1024);
      let handedOver = 0;
      const enabledPeople = new DistinctCounter(severalChunks);
      const noMailSeen = new FingerprintSet(64);
      const invalidSeen = new FingerprintSet(64);
      const withoutMail = new Tally(20);
      const invalidMail = new Tally(20);
      let batches = 0;
      for (const chunk of groupChunks) {
        const filter = s.enabledFilter ? `(&${anyOfFilter(s.memberOf, chunk)}${s.enabledFilter})` : anyOfFilter(s.memberOf, chunk);
        for await (const page of this.pages(client, filter, [s.mail, "objectClass"])) {
          const batch: string[] = [];
          for (const entry of page) {
            if (this.isGroup(entry)) continue;
            const key = severalChunks ? normalizeDnLoose(entry.dn) : "";
            if (!enabledPeople.add(key)) continue;
            const raw = firstValue(entry, s.mail);
            if (raw === undefined || raw.trim() === "") {
              if (noMailSeen.add(normalizeDnLoose(entry.dn))) withoutMail.add(entry.dn);
              continue;
            }
            const a = normalizeAddress(raw);
            if (!a.ok) {
              if (invalidSeen.add(normalizeDnLoose(entry.dn))) invalidMail.add(`${entry.dn}: ${a.reason}`);
              continue;
            }
            if (addresses === null || addresses.add(a.address)) batch.push(a.address);
          }
          if (batch.length > 0) {
            batches += 1;
            handedOver += batch.length;
            try {
              await onBatch(batch);
            } catch (e) {
              throw new ConsumerError(e);
            }
          }
        }
      }
      // Every member, enabled or not, counted in a second pass that fetches no attribute values but
      // objectClass. Disabled = members − enabled: an entry the enabled filter cannot evaluate
      // (Undefined, e.g. an attribute the schema lacks) counts as disabled, and is not sent to.
      let members = enabledPeople.count;
      if (s.enabledFilter) {
        stage = "counting disabled members";
        const all = new DistinctCounter(severalChunks);
        for (const chunk of groupChunks) {
          for await (const page of this.pages(client, anyOfFilter(s.memberOf, chunk), ["objectClass"])) {
            for (const entry of page) if (!this.isGroup(entry)) all.add(severalChunks ? normalizeDnLoose(entry.dn) : "");
          }
        }
        members = all.count;
      }

      if (members === 0 && walk.groups.length === 1 && group.hasMembers) {
        throw new DirectoryError(
          "inconsistent",
          `Group ${named} has ${s.member} values but no entry under ${quoteDn(s.baseDn)} has ${s.memberOf}=<the group>: ` +
            `its members are outside the base DN or gone, or the directory does not maintain ${s.memberOf} (OpenLDAP: the memberof overlay). Nothing was resolved.`,
          groupDn,
        );
      }

      return {
        group: group.dn,
        resolvedAt,
        recipients: addresses?.size ?? handedOver,
        withoutMail: withoutMail.toJSON(),
        invalidMail: invalidMail.toJSON(),
        members,
        disabled: Math.max(0, members - enabledPeople.count),
        nestedGroups: walk.groups.slice(1),
        cycles: walk.cycles,
        batches,
        durationMs: Date.now() - started,
      };
    } catch (e) {
      // The caller's own failure (in onBatch) is theirs: passed on as it is, not as a directory error.
      if (e instanceof ConsumerError) throw e.error;
      throw classify(e, groupDn, stage, s.baseDn);
    } finally {
      await client.unbind().catch(() => {});
    }
  }

  private async password(groupDn: string): Promise<string> {
    const { bindPassword, bindPasswordFile } = this.settings;
    if (bindPassword !== undefined) return bindPassword;
    let text: string;
    try {
      text = await readFile(bindPasswordFile!, "utf8");
    } catch (e) {
      throw new DirectoryError("invalid_settings", `The bind password file cannot be read (${(e as NodeJS.ErrnoException).code ?? "error"}) while resolving group ${quoteDn(groupDn)}.`, groupDn, { cause: e });
    }
    const pw = text.replace(/\r?\n$/, "");
    if (pw === "") throw new DirectoryError("invalid_settings", `The bind password file is empty (an empty password would be an unauthenticated bind).`, groupDn);
    return pw;
  }

  /** Base-scope reads of the group: it exists, it is a group, and whether it has member values (without fetching them). */
  private async readGroup(client: Client, groupDn: string): Promise<{ dn: string; hasMembers: boolean }> {
    const s = this.s;
    const named = quoteDn(groupDn);
    let found: Entry | undefined;
    try {
      const r = await client.search(groupDn, { scope: "base", filter: "(objectClass=*)", attributes: ["objectClass"], timeLimit: s.timeLimitSeconds });
      found = r.searchEntries[0];
    } catch (e) {
      if (e instanceof NoSuchObjectError) throw new DirectoryError("no_such_group", `There is no group ${named} in the directory.`, groupDn, { cause: e });
      throw e;
    }
    if (!found) throw new DirectoryError("no_such_group", `There is no group ${named} in the directory (not visible to the bind DN).`, groupDn);
    const classes = values(found, "objectClass").map((c) => c.toLowerCase());
    if (!s.groupClasses.some((c) => classes.includes(c))) {
      throw new DirectoryError("no_such_group", `${named} is not a group (object classes: ${classes.join(", ")}).`, groupDn);
    }
    const withMembers = await client.search(found.dn, {
      scope: "base",
      filter: `(${s.member}=*)`,
      attributes: ["1.1"],
      timeLimit: s.timeLimitSeconds,
    });
    return { dn: found.dn, hasMembers: withMembers.searchEntries.length > 0 };
  }

  private isGroup(entry: Entry): boolean {
    return values(entry, "objectClass").some((c) => this.s.groupClasses.includes(c.toLowerCase()));
  }

  /** The groups that are direct members of `groupDn` (small: groups, not people). */
  private async subgroupsOf(client: Client, groupDn: string): Promise<string[]> {
    const s = this.s;
    const out: string[] = [];
    for await (const page of this.pages(client, `(&${equalityFilter(s.memberOf, groupDn)}${s.groupClassFilter})`, ["1.1"])) {
      for (const e of page) out.push(e.dn);
    }
    return out;
  }

  /**
   * The entries of a paged search, page by page, reading one page ahead: the request for page k+1
   * is on the wire while page k is processed (and handed to onBatch), so the directory and the
   * client work at the same time. At most two pages are in memory.
   */
  private async *pages(client: Client, filter: string, attributes: string[]): AsyncGenerator<Entry[]> {
    const s = this.s;
    const it = client.searchPaginated(s.baseDn, {
      scope: "sub",
      filter,
      attributes,
      paged: { pageSize: s.pageSize },
      derefAliases: "never",
      timeLimit: s.timeLimitSeconds,
    });
    let done = false;
    try {
      let next = it.next();
      for (;;) {
        const r = await next;
        if (r.done) {
          done = true;
          return;
        }
        next = it.next();
        // Handled when awaited on the next turn; this only keeps a failure that comes while the
        // current page is being processed from being reported as unhandled.
        next.catch(() => {});
        yield r.value.searchEntries;
      }
    } finally {
      // Stopped early (an error in the consumer): let the generator finish, ignoring its outcome.
      if (!done) void it.return(undefined).catch(() => {});
    }
  }
}

/** Checks settings as the constructor does, without keeping them: throws DirectoryError("invalid_settings") naming the setting. */
export function checkDirectorySettings(st: LdapDirectorySettings): void {
  checkSettings(st);
}

function checkSettings(st: LdapDirectorySettings): Resolved {
  const bad = (what: string): never => {
    throw new DirectoryError("invalid_settings", `Directory settings: ${what}.`);
  };
  let url: URL;
  try {
    url = new URL(st.url);
  } catch {
    return bad("url is not a URL");
  }
  if (url.protocol !== "ldap:" && url.protocol !== "ldaps:") bad("url must start with ldap:// or ldaps://");
  if ((url.pathname !== "" && url.pathname !== "/") || url.search || url.username || url.password) bad("url must be scheme://host[:port] only");
  if (st.startTls && url.protocol === "ldaps:") bad("startTls is for ldap:// URLs (ldaps:// is TLS already)");
  for (const [k, v] of [["bindDn", st.bindDn], ["baseDn", st.baseDn]] as const) {
    try {
      if (parseDn(v).length === 0) bad(`${k} is empty`);
    } catch (e) {
      if (e instanceof DnSyntaxError) bad(`${k} is not a valid DN (${e.reason})`);
      throw e;
    }
  }
  if ((st.bindPassword === undefined) === (st.bindPasswordFile === undefined)) bad("give exactly one of bindPassword and bindPasswordFile");
  // RFC 4513 5.1.2: a simple bind with a DN and an empty password is an unauthenticated bind, which servers may accept.
  if (st.bindPassword === "") bad("bindPassword is empty (that would be an unauthenticated bind)");
  const mail = st.mailAttribute ?? "mail";
  const member = st.memberAttribute ?? "member";
  const memberOf = st.memberOfAttribute ?? "memberOf";
  for (const [k, v] of [["mailAttribute", mail], ["memberAttribute", member], ["memberOfAttribute", memberOf]] as const) {
    if (!isAttributeName(v)) bad(`${k} must be an attribute name (letters, digits, hyphens)`);
  }
  const groupClasses = st.groupObjectClasses ?? DEFAULT_GROUP_CLASSES;
  if (groupClasses.length === 0 || !groupClasses.every(isAttributeName)) bad("groupObjectClasses must be object class names");
  const groupClassFilter = anyOfFilter("objectClass", groupClasses);
  let enabledFilter: string | null = null;
  if (st.enabledFilter !== undefined && st.enabledFilter.trim() !== "") {
    let f = decodeUtf8Escapes(st.enabledFilter.trim());
    if (!f.startsWith("(")) f = `(${f})`;
    const why = filterSyntaxError(f);
    if (why) bad(`enabledFilter is not an LDAP filter (RFC 4515): ${why}`);
    try {
      FilterParser.parseString(f);
    } catch (e) {
      bad(`enabledFilter is not an LDAP filter (${(e as Error).message})`);
    }
    enabledFilter = f;
  }
  const pageSize = st.pageSize ?? 500;
  if (!Number.isInteger(pageSize) || pageSize < 1 || pageSize > 10_000) bad("pageSize must be an integer from 1 to 10000");
  const timeoutMs = st.timeoutMs ?? 10_000;
  if (!Number.isFinite(timeoutMs) || timeoutMs < 100) bad("timeoutMs must be at least 100");
  const maxGroups = st.maxGroups ?? 10_000;
  if (!Number.isInteger(maxGroups) || maxGroups < 1) bad("maxGroups must be a positive integer");
  const host = url.hostname.replace(/^\[|\]$/g, "");
  const tls: ConnectionOptions = {
    ...(st.tls?.ca !== undefined ? { ca: st.tls.ca } : {}),
    host,
    // SNI must not be an IP address; the certificate is then checked against the IP itself.
    ...(st.tls?.servername ? { servername: st.tls.servername } : isIP(host) ? {} : { servername: host }),
  };
  return {
    url: `${url.protocol}//${url.host}`,
    startTls: st.startTls === true,
    tls,
    bindDn: st.bindDn,
    baseDn: st.baseDn,
    mail,
    member,
    memberOf,
    groupClasses: groupClasses.map((c) => c.toLowerCase()),
    groupClassFilter,
    enabledFilter,
    pageSize,
    timeoutMs,
    maxGroups,
    timeLimitSeconds: Math.max(1, Math.ceil(timeoutMs / 1000)),
  };
}

/** Carries an error thrown by onBatch through the directory error handling untouched. */
class ConsumerError {
  constructor(readonly error: unknown) {}
}

/** Any failure, as a DirectoryError naming the group. */
function classify(e: unknown, groupDn: string, stage: string, base: string): DirectoryError {
  const named = quoteDn(groupDn);
  if (e instanceof DirectoryError) return e;
  if (e instanceof GroupLimitError) {
    return new DirectoryError("limit_exceeded", `Group ${named} nests ${e.message}; refused.`, groupDn, { cause: e });
  }
  if (e instanceof DnSyntaxError) {
    // A DN the directory returned that we cannot parse (member of a group): do not guess.
    return new DirectoryError("refused", `The directory returned a DN that is not valid RFC 4514 while resolving group ${named} (${e.reason}).`, groupDn, { cause: e });
  }
  if (e instanceof InvalidDNSyntaxError) {
    return new DirectoryError("invalid_dn", `The directory refused the DN of group ${named} as invalid (${describe(e)}).`, groupDn, { cause: e });
  }
  if (e instanceof SizeLimitExceededError || e instanceof TimeLimitExceededError || e instanceof AdminLimitExceededError) {
    return new DirectoryError("limit_exceeded", `The directory stopped the search at a limit (${describe(e)}) while ${stage} for group ${named}: the audience would be partial, so nothing is resolved. Give the bind DN higher limits (OpenLDAP: limits … size.prtotal=unlimited).`, groupDn, { cause: e });
  }
  if (e instanceof NoSuchObjectError) {
    return new DirectoryError("invalid_settings", `The base DN ${quoteDn(base)} does not exist (${describe(e)}) while ${stage} for group ${named}.`, groupDn, { cause: e });
  }
  if (e instanceof ResultCodeError) {
    return new DirectoryError("refused", `The directory refused the request while ${stage} for group ${named}: ${describe(e)}.`, groupDn, { cause: e });
  }
  const msg = e instanceof Error ? ((e as NodeJS.ErrnoException).code ? `${(e as NodeJS.ErrnoException).code}: ${e.message}` : e.message) : String(e);
  return new DirectoryError("unavailable", `Directory unavailable while ${stage} for group ${named}: ${msg}.`, groupDn, { cause: e });
}

/** An LDAP result error in words: ldapts' messages hold little more than the code ("InvalidCredentialsError (49)"). */
function describe(e: ResultCodeError): string {
  const name = e.constructor.name.replace(/Error$/, "").replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
  const detail = e.message.replace(/\s*Code: 0x[0-9a-f]+\s*$/i, "").trim();
  return `${name}, result code ${e.code}${detail ? `: ${detail}` : ""}`;
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** A DN for a message: quoted, control characters shown as escapes, long ones cut. */
function quoteDn(dn: string): string {
  const shown = String(dn).replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
  return JSON.stringify(shown.length > 300 ? `${shown.slice(0, 300)}…` : shown);
}

/** A DN returned by the server, normalised for deduplication; the raw string if it does not parse (never throws). */
function normalizeDnLoose(dn: string): string {
  try {
    return normalizeDn(dn);
  } catch {
    return dn;
  }
}

function values(entry: Entry, attribute: string): string[] {
  const want = attribute.toLowerCase();
  for (const [k, v] of Object.entries(entry)) {
    if (k === "dn" || k.toLowerCase() !== want) continue;
    const list = Array.isArray(v) ? v : [v];
    return list.map((x) => (Buffer.isBuffer(x) ? x.toString("utf8") : String(x)));
  }
  return [];
}

function firstValue(entry: Entry, attribute: string): string | undefined {
  return values(entry, attribute)[0];
}
