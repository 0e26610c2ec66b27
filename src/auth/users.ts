/**
 * Users and their bearer tokens, from USERS_FILE. Only the SHA-256 of a token is kept in memory;
 * a plain `token` in the file is accepted in development only.
 */
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, unwatchFile, watchFile, writeFileSync, type Stats } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import { formatMailbox, parseMailbox, type Mailbox } from "../domain/sender.js";

export const ROLES = ["author", "approver", "ops", "admin"] as const;
export type Role = (typeof ROLES)[number];

export interface User {
  email: string;
  name: string;
  roles: Role[];
  /** The sender mailboxes this user may send as, besides MAIL_FROM (display names as configured). */
  senders: Mailbox[];
  /** SHA-256 of the user's current token: a dashboard session is bound to it (never shown anywhere). */
  credential: string;
}

/** A sender in USERS_FILE: an address, or `{address, name}` for a display name ("CEO Office"). */
const sender = z.union([z.email(), z.strictObject({ address: z.email(), name: z.string().max(200) })]).transform((s, ctx) => {
  const raw = typeof s === "string" ? s : formatMailbox({ name: s.name.trim(), address: s.address.toLowerCase() });
  const parsed = parseMailbox(raw);
  if (!parsed.ok) {
    ctx.addIssue({ code: "custom", message: `not a sender mailbox: ${parsed.reason}` });
    return z.NEVER;
  }
  return parsed.mailbox;
});

const entry = z
  .object({
    email: z.email().transform((e) => e.toLowerCase()),
    name: z.string().min(1).max(200),
    roles: z.array(z.enum(ROLES)).min(1),
    senders: z.array(sender).optional(),
    tokenSha256: z.string().regex(/^[0-9a-f]{64}$/i).optional(),
    token: z.string().min(16).optional(),
  })
  .refine((u) => u.tokenSha256 || u.token, { error: "needs tokenSha256 (or token, in development)" });

const file = z.object({ users: z.array(entry) });

export const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

/** People known from elsewhere than USERS_FILE (auth/oidc-people.ts: those who signed in with OpenID Connect). */
export interface PeopleSource {
  byAddress(email: string): User | null;
  all(): User[];
}

export class UserDirectory {
  private byTokenHash = new Map<string, User>();
  private byEmail = new Map<string, User>();
  private others: PeopleSource | null = null;

  constructor(
    raw: unknown,
    private readonly opts: { allowPlainTokens: boolean },
  ) {
    this.replace(raw);
  }

  /**
   * Takes a new version of the file's content, whole or not at all: an invalid file throws and the
   * users stay as they were. Sessions check their user and credential at every request, so a
   * removed user or a rotated token ends them at their next request.
   */
  replace(raw: unknown): void {
    const parsed = file.safeParse(raw);
    if (!parsed.success) throw new Error(`USERS_FILE is invalid:\n${z.prettifyError(parsed.error)}`);
    const byTokenHash = new Map<string, User>();
    const byEmail = new Map<string, User>();
    for (const u of parsed.data.users) {
      if (u.token && !u.tokenSha256 && !this.opts.allowPlainTokens) throw new Error(`USERS_FILE: ${u.email} has a plain token; use tokenSha256 in production`);
      const credential = (u.tokenSha256 ?? sha256(u.token!)).toLowerCase();
      const user: User = { email: u.email, name: u.name, roles: [...u.roles], senders: u.senders ?? [], credential };
      byTokenHash.set(credential, user);
      byEmail.set(user.email, user);
    }
    this.byTokenHash = byTokenHash;
    this.byEmail = byEmail;
  }

  static fromFile(path: string, opts: { allowPlainTokens: boolean }): UserDirectory {
    return new UserDirectory(readUsersFile(path), opts);
  }

  /** Reads the file again (see `replace`). */
  reload(path: string): void {
    this.replace(readUsersFile(path));
  }

  byToken(token: string): User | null {
    return this.byTokenHash.get(sha256(token)) ?? null;
  }

  /**
   * Consults `source` too (every process attaches the OpenID Connect registry when sign-on is
   * configured). An address in USERS_FILE is answered from the file: its roles there are what the
   * API, links and notifications use.
   */
  attach(source: PeopleSource): void {
    this.others = source;
  }

  byAddress(email: string): User | null {
    return this.byEmail.get(email.toLowerCase()) ?? this.others?.byAddress(email) ?? null;
  }

  all(): User[] {
    const fromFile = [...this.byEmail.values()];
    return this.others ? [...fromFile, ...this.others.all().filter((u) => !this.byEmail.has(u.email))] : fromFile;
  }

  withRole(role: Role): User[] {
    return this.all().filter((u) => u.roles.includes(role));
  }
}

/**
 * Whether the user may decide as an approver: approvers, and admins (the roles table gives admins
 * everything the other roles may do). Never on their own message: callers check that too.
 */
export const mayDecide = (u: { roles: readonly Role[] }): boolean => u.roles.includes("approver") || u.roles.includes("admin");

function readUsersFile(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new Error(`USERS_FILE ${path} cannot be read as JSON: ${(e as Error).message}`);
  }
}

/** How often USERS_FILE is looked at for a change: a removed user or a rotated token takes effect within this. */
export const USERS_FILE_CHECK_MS = 2000;

/**
 * Re-reads USERS_FILE when it changes (no restart needed). Polls its modification time and size
 * (`fs.watchFile`): it works for files replaced by rename, on network and container file systems,
 * where change events are unreliable. A file that does not parse is logged and ignored: the users
 * stay as they were. Returns the stop function.
 */
export function watchUsersFile(path: string, users: UserDirectory, log: { info(o: object, m: string): void; error(o: object, m: string): void }): () => void {
  const onChange = (cur: Stats, prev: Stats) => {
    if (cur.mtimeMs === prev.mtimeMs && cur.size === prev.size) return;
    try {
      users.reload(path);
      log.info({ usersFile: path, users: users.all().length }, `USERS_FILE reloaded: ${users.all().length} users`);
    } catch (e) {
      log.error({ usersFile: path }, `USERS_FILE changed but was not taken: ${(e as Error).message}`);
    }
  };
  watchFile(path, { interval: USERS_FILE_CHECK_MS, persistent: false }, onChange);
  return () => unwatchFile(path, onChange);
}

export const DEMO_USERS = [
  { email: "author@corp.example", name: "Avery Author", roles: ["author"] },
  { email: "approver1@corp.example", name: "Blake Approver", roles: ["approver"] },
  { email: "approver2@corp.example", name: "Casey Approver", roles: ["approver"] },
  { email: "ops@corp.example", name: "Drew Oncall", roles: ["ops", "admin"] },
] as const;

/**
 * Development only: demo users with random tokens, kept in a file so tokens survive restarts.
 * Returns the file's path.
 */
export function seedDemoUsers(path: string): string {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    const users = DEMO_USERS.map((u) => ({ ...u, token: `dev-${u.email.split("@")[0]}-${randomBytes(12).toString("hex")}` }));
    writeFileSync(path, JSON.stringify({ users }, null, 2), { mode: 0o600 });
  }
  return path;
}
