/**
 * Directory audiences: an audience defined as a directory group (`{name, directoryGroup: "<DN>"}`)
 * and resolved from the directory (directory/ldap-directory.ts) into an ordinary audience version.
 *
 * When it is resolved: when it is defined (POST /api/audiences), when its owner or an admin asks
 * (POST /api/audiences/:name/resolve), and at every freeze of a message naming it: a submit (new
 * message or draft) and an edit of a pending or rejected message, which freezes a new revision's
 * recipients (a draft save freezes nothing and resolves nothing). The resolution streams into the
 * audience store's scratch keys a page at a time and commits as the audience's next version (audited
 * `audienceResolve`: who, when, how many, added, removed, the group, members without mail, disabled),
 * then the submit freezes it like any list (in slices: store/recipient-freeze.ts). A failure (directory unreachable, bind refused, a
 * refused change) leaves no scratch key, the audience's current version and the message as they were.
 *
 * The change limit: a resolution of 0 recipients (422 `directory_empty`), or one whose added +
 * removed exceed DIRECTORY_MAX_CHANGE_PERCENT of the last resolution's size (409
 * `directory_change_refused`), is refused, naming the numbers. "The last resolution" is the
 * audience's current version when it is a resolution of the same group; an audience newly defined
 * (or redefined to another group, or replacing an uploaded list) has none: only the 0 rule applies.
 * An admin confirms a refused resolution with `POST /api/audiences/:name/resolve {"confirm": true}`
 * (or `confirm: true` when defining it): the resolution is committed as the new baseline, recorded
 * with `confirmedBy`; the author then submits again, and that submit's resolution is compared with
 * the confirmed one. A confirmed empty resolution empties the audience; a message cannot be sent to
 * it while it stays empty (422 at submit).
 */
import type { Logger } from "pino";
import type { AudienceStore, AudienceUpload, DirectoryRecord, StagedChange } from "../audiences/audience-store.js";
import { assertAudienceName } from "../audiences/audience-store.js";
import { AudienceError } from "../audiences/errors.js";
import type { AudienceRecord } from "../audiences/csv.js";
import type { User } from "../auth/users.js";
import { DnSyntaxError, normalizeDn, parseDn } from "../directory/group-resolution.js";
import { DirectoryError, type BatchCallback, type GroupResolution, type ResolveGroupOptions } from "../directory/ldap-directory.js";
import { DomainError } from "../domain/errors.js";

/** What resolves a group: LdapDirectory, or a stand-in in tests. */
export interface GroupResolver {
  resolveGroup(groupDn: string, onBatch: BatchCallback, opts?: ResolveGroupOptions): Promise<GroupResolution>;
}

export interface DirectoryAudiencesDeps {
  audiences: AudienceStore;
  /** null: no directory configured (DIRECTORY_URL unset). */
  directory: GroupResolver | null;
  /** DIRECTORY_MAX_CHANGE_PERCENT. */
  maxChangePercent: number;
  logger?: Pick<Logger, "info" | "warn">;
}

export interface ResolveOptions {
  /** An admin accepts a resolution the change limit refuses (403 for anyone else). */
  confirm?: boolean;
}

/** A resolution committed: the audience's new version and what the directory said. */
export type DirectoryResolution = AudienceUpload & { directory: DirectoryRecord };

const CONFIRM_HOW = (name: string) => `an admin may accept it as the new baseline with POST /api/audiences/${name}/resolve {"confirm": true}, then submit again`;

export class DirectoryAudiences {
  constructor(private readonly d: DirectoryAudiencesDeps) {}

  get configured(): boolean {
    return this.d.directory !== null;
  }

  /** Creates or replaces audience `name` as directory group `group` (owner rules as for uploads), resolved now. */
  async define(name: string, group: string, user: User, opts: ResolveOptions & { anyOwner: boolean }): Promise<DirectoryResolution> {
    assertAudienceName(name);
    checkGroupDn(group);
    this.requireDirectory(name);
    this.mayConfirm(user, opts);
    return this.resolveInto(name, group, user, { anyOwner: opts.anyOwner, confirm: opts.confirm === true, resolution: false });
  }

  /** Resolves directory audience `name` again (its owner or an admin; `confirm` an admin only). */
  async resolve(name: string, user: User, opts: ResolveOptions & { anyOwner: boolean }): Promise<DirectoryResolution> {
    const info = await this.d.audiences.get(name);
    if (!info) throw new DomainError("not_found", `audience ${name} does not exist`);
    if (!info.directory) throw new DomainError("conflict", `audience ${name} is an uploaded list, not a directory group: there is nothing to resolve`);
    if (!opts.anyOwner && info.owner.toLowerCase() !== user.email.toLowerCase()) {
      throw new DomainError("forbidden", `audience ${name} belongs to ${info.owner}: only its owner or an admin may resolve it`, { owner: info.owner });
    }
    this.requireDirectory(name);
    this.mayConfirm(user, opts);
    return this.resolveInto(name, info.directory.group, user, { anyOwner: true, confirm: opts.confirm === true, resolution: true });
  }

  /**
   * At a freeze (submit, edit): resolves every directory audience among `lists`, in order, each into
   * its next version, before the submit script copies it. Uploaded lists and unknown names are left
   * to the submit. Throws the DomainError of the first that fails; the message is not touched.
   */
  async resolveForSubmit(lists: readonly string[], user: User): Promise<void> {
    for (const name of lists) {
      const info = await this.d.audiences.get(name);
      if (!info?.directory) continue;
      this.requireDirectory(name);
      const r = await this.resolveInto(name, info.directory.group, user, { anyOwner: true, confirm: false, resolution: true });
      if (r.size === 0) {
        throw new DomainError(
          "directory_empty",
          `audience ${name}: directory group ${r.directory.group} has no recipient (an admin confirmed it empty): a message cannot be sent to it; remove it from the message`,
          { audience: name, group: r.directory.group, recipients: 0 },
        );
      }
    }
  }

  private requireDirectory(name: string): void {
    if (!this.d.directory) {
      throw new DomainError("directory_not_configured", `audience ${name} is a directory group, but no directory is configured (DIRECTORY_URL): nothing was changed`, { audience: name });
    }
  }

  private mayConfirm(user: User, opts: ResolveOptions): void {
    if (opts.confirm && !user.roles.includes("admin")) throw new DomainError("forbidden", "only an admin may confirm a directory resolution the change limit refuses");
  }

  private async resolveInto(
    name: string,
    group: string,
    user: User,
    opts: { anyOwner: boolean; confirm: boolean; resolution: boolean },
  ): Promise<DirectoryResolution> {
    const directory = this.d.directory!;
    // The store counts distinct addresses in Redis: the resolver need not fingerprint them (flat memory).
    const stream = streamResolution((onBatch) => directory.resolveGroup(group, onBatch, { distinctAddresses: false }));
    let record: DirectoryRecord | undefined;
    let first = true;
    const check = (change: StagedChange) => {
      const prev = change.previous?.directory;
      first = !prev || !sameGroup(prev.group, group) || (change.previous?.size ?? 0) === 0;
      if (opts.confirm) return;
      refuseSharpChange(name, group, change, first, this.d.maxChangePercent);
    };
    let upload: AudienceUpload;
    try {
      upload = await this.d.audiences.replaceFromRecords(name, user.email, stream.records, {
        anyOwner: opts.anyOwner,
        check,
        allowEmpty: true, // the check refuses an empty resolution unless an admin confirms it
        resolution: opts.resolution,
        ...(opts.resolution ? { whileGroup: group } : {}),
        directory: () => (record = recordOf(group, stream.result(), first, opts.confirm ? user.email : undefined)),
      });
    } catch (e) {
      if (e instanceof DomainError && e.code.startsWith("directory_")) this.d.logger?.warn({ audience: name, group, by: user.email, code: e.code }, `audience ${name}: resolution of ${group} refused: ${e.message}`);
      throw translate(e, name, group);
    }
    const resolved: DirectoryRecord = { ...record!, added: upload.added, removed: upload.removed };
    this.d.logger?.info(
      { audience: name, group, by: user.email, version: upload.version, size: upload.size, added: upload.added, removed: upload.removed, confirmed: opts.confirm },
      `audience ${name} resolved from ${group} by ${user.email}: ${upload.size} recipients (+${upload.added}, -${upload.removed}), version ${upload.version}`,
    );
    return { ...upload, directory: resolved };
  }
}

/** A malformed DN is a 400 naming it, before anything is sent to a directory. */
export function checkGroupDn(group: unknown): void {
  const bad = (reason: string) =>
    new DomainError("invalid_input", `directoryGroup is not a valid DN (RFC 4514): ${reason}`, [{ path: ["body", "directoryGroup"], message: `not a valid DN: ${reason}` }]);
  if (typeof group !== "string") throw bad("not a string");
  try {
    if (parseDn(group).length === 0) throw bad("empty");
  } catch (e) {
    if (e instanceof DnSyntaxError) throw bad(e.reason);
    throw e;
  }
}

function sameGroup(a: string, b: string): boolean {
  try {
    return normalizeDn(a) === normalizeDn(b);
  } catch {
    return a === b;
  }
}

/** The change limit (see the top of this file); `first`: no earlier resolution of this group to compare with. */
function refuseSharpChange(name: string, group: string, change: StagedChange, first: boolean, maxPercent: number): void {
  const lastSize = change.previous?.size ?? 0;
  if (change.size === 0) {
    throw new DomainError(
      "directory_empty",
      `audience ${name}: directory group ${group} resolved to 0 recipients${first ? "" : ` (the last resolution had ${lastSize})`}: refused; ${CONFIRM_HOW(name)}`,
      { audience: name, group, recipients: 0, lastResolution: first ? null : lastSize, confirm: `POST /api/audiences/${name}/resolve {"confirm": true}` },
    );
  }
  if (first) return;
  const changed = change.added + change.removed;
  const percent = (100 * changed) / lastSize;
  if (percent <= maxPercent) return;
  const shown = Math.round(percent * 10) / 10;
  throw new DomainError(
    "directory_change_refused",
    `audience ${name}: directory group ${group} resolved to ${change.size} recipients, +${change.added} −${change.removed} against the last resolution's ${lastSize}: ` +
      `a change of ${shown}%, more than DIRECTORY_MAX_CHANGE_PERCENT (${maxPercent}%): refused; ${CONFIRM_HOW(name)}`,
    {
      audience: name,
      group,
      recipients: change.size,
      lastResolution: lastSize,
      added: change.added,
      removed: change.removed,
      changePercent: shown,
      maxChangePercent: maxPercent,
      confirm: `POST /api/audiences/${name}/resolve {"confirm": true}`,
    },
  );
}

function recordOf(group: string, r: GroupResolution, first: boolean, confirmedBy: string | undefined): DirectoryRecord {
  return {
    group,
    resolvedAt: r.resolvedAt,
    first,
    members: r.members,
    disabled: r.disabled,
    withoutMail: r.withoutMail,
    invalidMail: r.invalidMail,
    nestedGroups: r.nestedGroups.length,
    cycles: r.cycles.length,
    ...(confirmedBy ? { confirmedBy } : {}),
  };
}

/** A directory failure as the DomainError the API answers, naming the audience. */
function translate(e: unknown, name: string, group: string): unknown {
  if (e instanceof AudienceError && e.code === "invalid_recipient") {
    return new DomainError("invalid_input", `audience ${name}, directory group ${group}: ${e.message.replace(/rows? ha(s|ve) /, "member$1 ha$1 ")}`, e.details);
  }
  if (!(e instanceof DirectoryError)) return e;
  const details = { audience: name, group, directory: e.code };
  const message = `audience ${name}: ${e.message} Nothing was resolved or frozen.`;
  switch (e.code) {
    case "invalid_dn":
      return new DomainError("invalid_input", message, [{ path: ["body", "directoryGroup"], message: e.message }]);
    case "no_such_group":
      return new DomainError("directory_group_not_found", message, details);
    case "unavailable":
    case "bind_failed":
    case "invalid_settings":
      return new DomainError("directory_unavailable", message, details);
    case "limit_exceeded":
    case "inconsistent":
    case "refused":
      return new DomainError("directory_failed", message, details);
  }
}

/**
 * Runs a callback-style resolution as an async iterable of records, one batch at a time: the
 * resolver waits while the consumer (the store's upload) writes a batch, so at most one page is in
 * flight between them. If the consumer stops early (a refusal, Redis failing), the waiting batch is
 * rejected so the resolver stops and unbinds; the iterable's own end awaits that.
 */
export function streamResolution(run: (onBatch: BatchCallback) => Promise<GroupResolution>): { records: AsyncIterable<AudienceRecord>; result(): GroupResolution } {
  type Waiting = { batch: string[]; taken: () => void; stop: (e: Error) => void };
  let result: GroupResolution | undefined;
  async function* records(): AsyncGenerator<AudienceRecord> {
    // pending: handed over, not read yet; current: being yielded. The resolver waits on either until
    // it is read to its end (or refused when the consumer stops).
    const q: { pending: Waiting | null; current: Waiting | null; wake: (() => void) | null; finished: boolean; failure: unknown; stopped: boolean } = {
      pending: null,
      current: null,
      wake: null,
      finished: false,
      failure: undefined,
      stopped: false,
    };
    const stop = new Error("the upload stopped reading the resolution");
    const done = run(
      (batch) =>
        new Promise<void>((taken, reject) => {
          if (q.stopped) return reject(stop);
          q.pending = { batch, taken, stop: reject };
          q.wake?.();
        }),
    )
      .then(
        (r) => void (result = r),
        (e: unknown) => void (q.failure = e),
      )
      .finally(() => {
        q.finished = true;
        q.wake?.();
      });
    try {
      for (;;) {
        if (q.pending) {
          q.current = q.pending;
          q.pending = null;
          for (const email of q.current.batch) yield { email };
          q.current.taken();
          q.current = null;
          continue;
        }
        if (q.finished) {
          if (q.failure !== undefined) throw q.failure;
          return;
        }
        // Woken by the next batch or by the end of the resolution, whichever comes first.
        await new Promise<void>((r) => (q.wake = r));
        q.wake = null;
      }
    } finally {
      q.stopped = true;
      q.current?.stop(stop);
      q.pending?.stop(stop);
      await done;
    }
  }
  return {
    records: records(),
    result: () => {
      if (!result) throw new Error("streamResolution: the result was asked before the resolution ended");
      return result;
    },
  };
}
