/**
 * The IMAP purge connector: removes a recalled message from one recipient's mailbox on any IMAP
 * server where an admin may open every mailbox (Dovecot's master users: log in as
 * `recipient*admin` with the admin's password). The contract is connector.ts's.
 *
 * One purge is one IMAP session: log in as the recipient, list the folders (every selectable one
 * of the recipient's personal namespace, or the configured ones), and in each: SEARCH HEADER
 * Message-ID, FETCH the hits' Message-ID header, keep the exact matches (`sameMessageId`), mark
 * those \Deleted and remove them with UID EXPUNGE, then check that they are gone. A master login
 * is bound to one mailbox, so sessions are not pooled: `connections` bounds how many purges run
 * at once, each with its own login.
 *
 * Deleting nothing else rests on three rules:
 * - Only UIDs whose own Message-ID header is exactly the one asked for are flagged.
 * - Only UID EXPUNGE (UIDPLUS, RFC 4315) removes them. A plain EXPUNGE (or CLOSE) would also
 *   remove every message the user had flagged \Deleted in that folder, so a server without
 *   UIDPLUS gets a `failed` purge (retry: false) instead (IMAP4rev2 has UID EXPUNGE too, but
 *   imapflow uses it there only once rev2 is ENABLEd: not relied on). This code never calls CLOSE
 *   (imapflow's `mailboxClose()`): selecting the next folder or LOGOUT removes nothing.
 * - Folders of the other-users and shared namespaces are never searched.
 *
 * imapflow is pinned to exactly 2.10.2: it declares `engines.node >= 20.0.0` (2.0.0 raised its
 * minimum to Node 20; no release since raised it again), ships its own ESM types, and returns
 * `false` from search()/messageDelete() when the server refuses, which this code checks. Its
 * messageDelete() falls back to plain EXPUNGE without UIDPLUS, which is why UIDPLUS is checked
 * here first; a newer release must be re-read for that before the pin moves.
 */
import { PurgeSlots, purgeInSlot, type PurgeLog } from "./slots.js";
import { ImapFlow, type ImapFlowError, type ListResponse, type Logger } from "imapflow";
import { isValidMessageId, sameMessageId, type PurgeConnector, type PurgeResult } from "./connector.js";

export interface ImapPurgeSettings {
  host: string;
  port: number;
  /**
   * `implicit`: TLS from the first byte (port 993). `starttls`: the session must upgrade, and
   * fails when the server does not offer STARTTLS. `none`: cleartext, for a server on loopback
   * only. There is no opportunistic mode: the admin's password opens every mailbox.
   */
  tls: "implicit" | "starttls" | "none";
  /** PEM certificates trusted for the server's; unset: Node's default store. Always verified. */
  ca?: string[];
  /** Name checked against the server's certificate (and sent as SNI); default: `host`. */
  servername?: string;
  adminUser: string;
  adminPassword: string;
  /** How the admin logs in as the recipient. `dovecot-master`: `${mailbox}${separator}${adminUser}`. */
  loginFormat?: "dovecot-master";
  /** Dovecot's `auth_master_user_separator`; default `*`. */
  masterSeparator?: string;
  /** `all` (default): every selectable folder of the recipient's own namespace; or these paths only. */
  folders?: "all" | string[];
  /** Purges (so IMAP sessions) running at once; default 4. */
  connections?: number;
  timeouts?: Partial<ImapPurgeTimeouts>;
  /** The connector's own log lines (pino-compatible); default none. */
  log?: PurgeLog;
}

export interface ImapPurgeTimeouts {
  /**
   * TCP connect and TLS handshake, default 10 s: a server that cannot complete a handshake in
   * that time is down or unreachable, and the purge is retried later anyway.
   */
  connectMs: number;
  /** Server greeting after connecting, default 10 s (Dovecot greets at once; a slow greeting is an overloaded server). */
  greetingMs: number;
  /**
   * No byte from the server while a reply is awaited, default 60 s. A SEARCH without a full-text
   * index reads every header of the folder; Dovecot reports progress (`* OK Searched n%`)
   * during long searches, so even a large folder is not silent for this long.
   */
  idleMs: number;
  /**
   * The whole purge of one mailbox, default 5 minutes: bounds a server that trickles bytes
   * (never idle, never done) so that a `connections` slot always comes back.
   */
  purgeMs: number;
  /** LOGOUT after the work is done, default 5 s: its answer changes nothing, so it is not waited for long. */
  logoutMs: number;
}

const DEFAULT_TIMEOUTS: ImapPurgeTimeouts = { connectMs: 10_000, greetingMs: 10_000, idleMs: 60_000, purgeMs: 300_000, logoutMs: 5_000 };

/** Server response codes (RFC 5530) after which the same purge may well succeed later. */
const TEMPORARY_CODES = new Set(["UNAVAILABLE", "INUSE", "LIMIT", "OVERQUOTA", "SERVERBUG", "CONTACTADMIN", "EXPUNGEISSUED"]);

/** A purge that failed: the result, ready to return. */
class PurgeFailure extends Error {
  constructor(
    readonly reason: string,
    readonly retry: boolean,
  ) {
    super(reason);
  }
}

export class ImapPurgeConnector implements PurgeConnector {
  private readonly timeouts: ImapPurgeTimeouts;
  private readonly slots: PurgeSlots;

  constructor(private readonly settings: ImapPurgeSettings) {
    this.timeouts = { ...DEFAULT_TIMEOUTS, ...settings.timeouts };
    this.slots = new PurgeSlots(Math.max(1, settings.connections ?? 4));
  }

  async purge(mailbox: string, messageId: string): Promise<PurgeResult> {
    const refused = this.checkInput(mailbox, messageId);
    if (refused) return refused;
    return purgeInSlot(this.slots, "imap", this.settings.log, mailbox, messageId, () => this.purgeOne(mailbox, messageId));
  }

  close(): Promise<void> {
    return this.slots.close();
  }

  private checkInput(mailbox: string, messageId: string): PurgeResult | null {
    if (this.slots.closed) return { outcome: "failed", reason: "the imap purge connector was closed", retry: true };
    if (!isValidMessageId(messageId)) return { outcome: "failed", reason: `not a Message-ID: ${JSON.stringify(messageId.slice(0, 200))}`, retry: false };
    const separator = this.settings.masterSeparator ?? "*";
    // A separator inside the address would make the server split the login elsewhere: a
    // different (or no) mailbox would be opened.
    if (!mailbox || /[\s\x00-\x1f\x7f"\\]/.test(mailbox) || mailbox.includes(separator)) {
      return { outcome: "failed", reason: `mailbox ${JSON.stringify(mailbox)} cannot be opened through a master login (empty, spaces, quotes or the separator ${JSON.stringify(separator)})`, retry: false };
    }
    return null;
  }

  private async purgeOne(mailbox: string, messageId: string): Promise<PurgeResult> {
    const s = this.settings;
    const login = `${mailbox}${s.masterSeparator ?? "*"}${s.adminUser}`;
    const refusal: Refusal = { err: undefined };
    const client = new ImapFlow({
      host: s.host,
      port: s.port,
      secure: s.tls === "implicit",
      doSTARTTLS: s.tls === "starttls",
      servername: s.servername,
      tls: { rejectUnauthorized: true, ...(s.ca ? { ca: s.ca } : {}) },
      auth: { user: login, pass: s.adminPassword },
      logger: capturingLogger(refusal),
      disableAutoIdle: true, // one short session: IDLE would only have to be broken again
      disableCompression: true, // a handful of small commands: COMPRESS costs a round trip and saves nothing
      disableAutoEnable: true, // nor CONDSTORE/IMAP4rev2: fewer round trips, and no rev2 shortcut around the UIDPLUS check
      connectionTimeout: this.timeouts.connectMs,
      greetingTimeout: this.timeouts.greetingMs,
      socketTimeout: this.timeouts.idleMs,
    });
    // imapflow reports a broken session as an 'error' event as well as a rejected command: without a
    // listener the event would crash the process.
    client.on("error", () => {});
    let gaveUp = false;
    const deadline = setTimeout(() => {
      gaveUp = true;
      client.close();
    }, this.timeouts.purgeMs);
    const progress = { removed: 0, folders: [] as string[] };
    try {
      await this.connect(client, mailbox);
      if (!client.capabilities.has("UIDPLUS")) {
        throw new PurgeFailure(`the IMAP server ${s.host} does not offer UIDPLUS: without UID EXPUNGE a purge would also remove messages the user had marked deleted`, false);
      }
      for (const folder of await this.foldersOf(client)) {
        const removed = await this.purgeFolder(client, folder, messageId, refusal);
        if (removed > 0) {
          progress.removed += removed;
          progress.folders.push(folder);
        }
      }
    } catch (err) {
      const failure = gaveUp
        ? new PurgeFailure(`gave up after ${this.timeouts.purgeMs} ms`, true)
        : err instanceof PurgeFailure
          ? err
          : classify(err, `IMAP ${s.host}:${s.port} as ${mailbox}`);
      const done = progress.removed > 0 ? ` (${progress.removed} cop${progress.removed === 1 ? "y" : "ies"} already removed from ${progress.folders.join(", ")})` : "";
      return { outcome: "failed", reason: failure.reason + done, retry: failure.retry };
    } finally {
      clearTimeout(deadline);
      await this.logout(client);
    }
    return progress.removed > 0 ? { outcome: "purged", ...progress } : { outcome: "not_found" };
  }

  /** Logs in as the recipient; a refused login becomes the failure it means. */
  private async connect(client: ImapFlow, mailbox: string): Promise<void> {
    try {
      await client.connect();
    } catch (err) {
      const e = err as ImapFlowError;
      if (!e.authenticationFailed) throw err;
      const code = e.serverResponseCode?.toUpperCase();
      const said = (typeof e.response === "string" ? e.response : e.responseText ?? e.message).replace(/^\S+ (?=(NO|BAD) )/, "").slice(0, 200); // without the command's tag
      // Dovecot answers a wrong master password with AUTHENTICATIONFAILED and an unknown user
      // (or one the master may not open) with AUTHORIZATIONFAILED, after checking the password.
      if (code === "AUTHORIZATIONFAILED") {
        throw new PurgeFailure(`no mailbox ${mailbox} that the admin ${this.settings.adminUser} may open (server: ${said})`, false);
      }
      if (code && TEMPORARY_CODES.has(code)) throw new PurgeFailure(`login as ${mailbox} failed for now (server: ${said})`, true);
      throw new PurgeFailure(`the IMAP server refused the admin login ${this.settings.adminUser} (as ${mailbox}): check the admin user and password (server: ${said})`, false);
    }
  }

  /** The folders to search: the configured ones, or every selectable folder of the recipient's own namespace. */
  private async foldersOf(client: ImapFlow): Promise<string[]> {
    const configured = this.settings.folders ?? "all";
    if (configured !== "all") return configured;
    const foreign = [...(client.namespaces?.other || []), ...(client.namespaces?.shared || [])]
      .map((ns) => ns.prefix)
      .filter((prefix) => prefix !== "");
    const inForeign = (f: ListResponse) =>
      foreign.some((prefix) => f.path.startsWith(prefix) || f.path === prefix.slice(0, -1) || f.pathAsListed.startsWith(prefix));
    const flagged = (f: ListResponse, flag: string) => [...f.flags].some((x) => x.toLowerCase() === flag);
    return (await client.list({ listOnly: true }))
      .filter((f) => !flagged(f, "\\noselect") && !flagged(f, "\\nonexistent") && !inForeign(f))
      .map((f) => f.path);
  }

  /** Removes the exact copies from one folder; answers how many. */
  private async purgeFolder(client: ImapFlow, folder: string, messageId: string, refusal: Refusal): Promise<number> {
    try {
      await client.mailboxOpen(folder); // SELECT, read-write
    } catch (err) {
      const e = err as ImapFlowError;
      // Deleted since the LIST, or a configured folder this user does not have: nothing to purge there.
      if (e.mailboxMissing || e.serverResponseCode?.toUpperCase() === "NONEXISTENT") return 0;
      throw classify(err, `opening ${folder}`);
    }
    // The search is a coarse filter (servers ignore case and match substrings): search for the ID
    // without its angle brackets, which a server may or may not include in what it compares, and
    // let sameMessageId decide.
    refusal.err = undefined;
    const hits = await client.search({ header: { "message-id": messageId.slice(1, -1) } }, { uid: true });
    if (!Array.isArray(hits)) throw failedCommand(`SEARCH in ${folder}`, refusal);
    if (hits.length === 0) return 0;
    const fetched = await client.fetchAll(hits.join(","), { uid: true, headers: ["message-id"] }, { uid: true });
    const exact = fetched.filter((m) => m.headers && sameMessageId(m.headers.toString("latin1"), messageId)).map((m) => m.uid);
    if (exact.length === 0) return 0;
    if (client.mailbox && client.mailbox.readOnly) throw new PurgeFailure(`folder ${folder} is read-only for the admin login`, false);
    const uids = exact.join(",");
    refusal.err = undefined;
    if (!(await client.messageDelete(uids, { uid: true }))) throw failedCommand(`UID STORE/EXPUNGE in ${folder}`, refusal);
    // UID EXPUNGE answered OK; check that those UIDs are really gone before reporting them removed.
    refusal.err = undefined;
    const left = await client.search({ uid: uids }, { uid: true });
    if (!Array.isArray(left)) throw failedCommand(`SEARCH in ${folder} after expunging`, refusal);
    if (left.length > 0) throw new PurgeFailure(`${left.length} cop${left.length === 1 ? "y" : "ies"} still in ${folder} after UID EXPUNGE`, true);
    return exact.length;
  }

  private async logout(client: ImapFlow): Promise<void> {
    if (client.usable) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((res) => (timer = setTimeout(res, this.timeouts.logoutMs)));
      await Promise.race([client.logout().catch(() => {}), late]);
      clearTimeout(timer);
    }
    client.close();
  }

}

/** The last command error imapflow logged in a session (see capturingLogger). */
interface Refusal {
  err: ImapFlowError | undefined;
}

/** A command imapflow answered with `false`: the server's refusal is the error it logged meanwhile. */
function failedCommand(what: string, refusal: Refusal): PurgeFailure {
  return refusal.err ? classify(refusal.err, what) : new PurgeFailure(`${what} failed`, true);
}

/**
 * Whether an error is worth retrying. A refusal with a temporary response code (RFC 5530:
 * UNAVAILABLE, INUSE for a locked mailbox, OVERQUOTA, ...), a broken connection or a timeout is;
 * so is a refusal without any response code (servers word "locked" or "busy" their own way) or
 * anything unforeseen. A refusal with another code (NOPERM, CANNOT, ...), a certificate we do not
 * trust, or a server without STARTTLS when it is required is not: trying again would change
 * nothing until someone does.
 */
function classify(err: unknown, what: string): PurgeFailure {
  const e = (err ?? {}) as ImapFlowError;
  const code = e.serverResponseCode?.toUpperCase();
  const said = e.responseText ?? e.reason ?? e.message ?? String(err);
  const reason = `${what}: ${said}`.slice(0, 500);
  if (e.tlsFailed || /certificate|self[- ]signed|STARTTLS/i.test(e.message ?? "")) return new PurgeFailure(reason, false);
  if (code) return new PurgeFailure(reason, TEMPORARY_CODES.has(code));
  return new PurgeFailure(reason, true);
}

/**
 * imapflow logs the server's refusal of a command it then answers with `false` (search,
 * messageDelete): keep the last one, so that the failure can name what the server said.
 */
function capturingLogger(refusal: Refusal): Logger {
  const capture = (obj: unknown) => {
    const err = (obj as { err?: ImapFlowError } | null)?.err;
    if (err && typeof err === "object") refusal.err = err;
  };
  const ignore = () => {};
  return { trace: ignore, debug: ignore, info: ignore, warn: capture, error: capture, fatal: capture };
}
