/**
 * A real Dovecot (Debian's `dovecot-imapd`, 2.3) for purge tests, run as a plain process
 * (`dovecot -F -c <conf>`) from a temporary configuration: passwd-file users, a master user that
 * may open every mailbox (`user*admin`), maildirs in a temporary folder, a public namespace
 * (`PUBLIC_PREFIX`) every user sees, IMAP on a free loopback
 * port and, with `tls`, IMAPS on another (STARTTLS is then offered on the plain port too).
 *
 * Found on Dovecot 2.3.19.1 (Debian 12):
 * - As root it runs its login processes as `dovenull` and the rest as `dovecot` (users the package
 *   creates); mail is stored as `dovecot`, whose uid must be allowed by `first_valid_uid`. The
 *   temporary folder must be traversable by them (0755) and the user files readable. As another
 *   user it runs every process as that user, with no chroot.
 * - A wrong master password is refused AUTHENTICATIONFAILED, an unknown user (master password
 *   right, `pass = yes`) AUTHORIZATIONFAILED; both after about half a second.
 * - Login and imap processes are reused (`service_count = 0`) so that logins do not fork;
 *   `auth_failure_delay = 0` and no anvil auth-penalty listener, so that a test's failed login
 *   does not slow the later ones.
 * - `disable_plaintext_auth = no` (2.3's name; 2.4 calls it `auth_allow_cleartext`), though
 *   Dovecot counts loopback connections as secure anyway.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir, userInfo } from "node:os";
import { join } from "node:path";
import { ImapFlow } from "imapflow";
import { messageIdsOf } from "../../src/purge/connector.js";
import { freePort } from "../../src/infra/redis-process.js";

const DOVECOT = "/usr/sbin/dovecot";
/** Prefix of a public namespace (RFC 2342 "shared") every user sees, e.g. `Public/Announcements`. */
export const PUBLIC_PREFIX = "Public/";

export interface DovecotOptions {
  users: string[];
  /** PEM key and certificate for IMAPS and STARTTLS; without, cleartext only. */
  tls?: { key: string; cert: string };
}

export interface Dovecot {
  host: string;
  /** Plain IMAP (STARTTLS offered when started with `tls`). */
  port: number;
  /** Implicit TLS, when started with `tls`. */
  tlsPort?: number;
  adminUser: string;
  adminPassword: string;
  separator: string;
  /** Stores a raw message (or several, over one login) in a user's folder (created if missing). */
  append(user: string, raw: string | string[], folder?: string, flags?: string[]): Promise<void>;
  /** The Message-ID header values in a user's folder, in UID order (`""` for a message without one). */
  list(user: string, folder?: string): Promise<string[]>;
  /** The last lines of Dovecot's log, for a failing test to show. */
  log(): string;
  /** Stops Dovecot and removes its folder. Always resolves. */
  stop(): Promise<void>;
}

export async function startDovecot(opts: DovecotOptions): Promise<Dovecot> {
  if (!existsSync(DOVECOT)) throw new Error(`no ${DOVECOT}: apt-get install -y dovecot-imapd`);
  const dir = mkdtempSync(join(tmpdir(), "airlock-dovecot-"));
  const f = (name: string) => join(dir, name);
  const host = "127.0.0.1";
  const port = await freePort();
  const tlsPort = opts.tls ? await freePort() : undefined;
  const adminUser = "purge-admin";
  const adminPassword = "master-secret";
  const separator = "*";
  const run = runAs();

  for (const sub of ["run", "state", "mail", "public"]) mkdirSync(f(sub));
  chmodSync(dir, 0o755); // mkdtemp makes it 0700: Dovecot's unprivileged processes must reach into it
  chownSync(f("mail"), run.mailUid, run.mailGid);
  chownSync(f("public"), run.mailUid, run.mailGid);
  // passwd-file: user:{scheme}password:uid:gid:gecos:home:shell (the userdb's defaults fill the rest)
  writeFileSync(f("master-users"), `${adminUser}:{PLAIN}${adminPassword}\n`, { mode: 0o644 });
  writeFileSync(f("users"), opts.users.map((u) => `${u}:{PLAIN}not-used-${u}::::\n`).join(""), { mode: 0o644 });
  if (opts.tls) {
    writeFileSync(f("server.pem"), opts.tls.cert);
    writeFileSync(f("server.key"), opts.tls.key, { mode: 0o600 }); // read by the master process (root) only
  }
  writeFileSync(f("dovecot.conf"), config({ dir, host, port, tlsPort, tls: !!opts.tls, run }));

  const child: ChildProcess = spawn(DOVECOT, ["-F", "-c", f("dovecot.conf")], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-10_000)));
  const exited = new Promise<void>((res) => child.once("exit", () => res()));
  child.once("error", (e) => (stderr += `\ncannot start ${DOVECOT}: ${e.message}`));
  const log = () => {
    try {
      return readFileSync(f("dovecot.log"), "utf8").split("\n").slice(-40).join("\n");
    } catch {
      return "";
    }
  };
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGTERM"); // dovecot -F stops its children and exits
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await waitForGreeting(host, port, () => child.exitCode !== null || stderr.includes("cannot start"));
  } catch (err) {
    const detail = `${(err as Error).message}\n${stderr}\n${log()}`;
    await stop();
    throw new Error(detail);
  }

  const session = async <T>(user: string, work: (c: ImapFlow) => Promise<T>): Promise<T> => {
    const c = new ImapFlow({
      host,
      port,
      secure: false,
      doSTARTTLS: false,
      auth: { user: `${user}${separator}${adminUser}`, pass: adminPassword },
      logger: false,
      disableAutoIdle: true,
    });
    c.on("error", () => {});
    await c.connect();
    try {
      return await work(c);
    } finally {
      await c.logout().catch(() => c.close());
    }
  };

  return {
    host,
    port,
    tlsPort,
    adminUser,
    adminPassword,
    separator,
    log,
    stop,
    append: (user, raw, folder = "INBOX", flags = []) =>
      session(user, async (c) => {
        if (folder !== "INBOX") await c.mailboxCreate(folder).catch(() => {}); // exists already: fine
        for (const message of Array.isArray(raw) ? raw : [raw]) {
          if (!(await c.append(folder, message, flags))) throw new Error(`APPEND to ${user}/${folder} refused`);
        }
      }),
    list: (user, folder = "INBOX") =>
      session(user, async (c) => {
        const box = await c.mailboxOpen(folder, { readOnly: true });
        if (box.exists === 0) return [];
        const messages = await c.fetchAll("1:*", { uid: true, headers: ["message-id"] }, { uid: true });
        return messages.sort((a, b) => a.uid - b.uid).map((m) => messageIdsOf(m.headers?.toString("latin1") ?? "")[0] ?? "");
      }),
  };
}

interface RunAs {
  /** Dovecot's internal and login users (and group), and the owner of the mail. */
  internalUser: string;
  loginUser: string;
  internalGroup?: string;
  mailUid: number;
  mailGid: number;
  chroot: boolean;
}

/** As root: the users Debian's package made. Otherwise everything runs as the current user. */
function runAs(): RunAs {
  const me = userInfo();
  if (me.uid !== 0) {
    const group = readFileSync("/etc/group", "utf8").split("\n").map((l) => l.split(":")).find((g) => Number(g[2]) === me.gid)?.[0];
    return { internalUser: me.username, loginUser: me.username, internalGroup: group, mailUid: me.uid, mailGid: me.gid, chroot: false };
  }
  const entry = readFileSync("/etc/passwd", "utf8").split("\n").map((l) => l.split(":")).find((p) => p[0] === "dovecot");
  if (!entry) throw new Error("no system user dovecot: install dovecot-imapd (apt-get install -y dovecot-imapd)");
  return { internalUser: "dovecot", loginUser: "dovenull", mailUid: Number(entry[2]), mailGid: Number(entry[3]), chroot: true };
}

function config(c: { dir: string; host: string; port: number; tlsPort?: number; tls: boolean; run: RunAs }): string {
  const { dir, run } = c;
  return `# written by test/support/dovecot.ts
protocols = imap
listen = ${c.host}
base_dir = ${dir}/run
state_dir = ${dir}/state
instance_name = airlock-test-${c.port}
log_path = ${dir}/dovecot.log
default_internal_user = ${run.internalUser}
default_login_user = ${run.loginUser}
${run.internalGroup ? `default_internal_group = ${run.internalGroup}` : ""}
first_valid_uid = ${run.mailUid}
last_valid_uid = ${run.mailUid}
${c.tls ? `ssl = yes\nssl_cert = <${dir}/server.pem\nssl_key = <${dir}/server.key` : "ssl = no"}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
auth_failure_delay = 0
mail_location = maildir:${dir}/mail/%u
mail_fsync = never

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/master-users
  master = yes
  # the user must also exist in the passdb below: an unknown one is refused AUTHORIZATIONFAILED
  pass = yes
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${dir}/users
}
userdb {
  driver = passwd-file
  args = username_format=%u ${dir}/users
  default_fields = uid=${run.mailUid} gid=${run.mailGid} home=${dir}/mail/%u
}
namespace inbox {
  inbox = yes
  separator = /
}
# Folders every user sees (no ACL plugin: everyone may write): a purge must not touch them.
namespace public {
  type = public
  separator = /
  prefix = ${PUBLIC_PREFIX}
  location = maildir:${dir}/public
  list = yes
  subscriptions = no
}

service imap-login {
  inet_listener imap {
    address = ${c.host}
    port = ${c.port}
  }
  inet_listener imaps {
    address = ${c.host}
    port = ${c.tlsPort ?? 0}
    ssl = yes
  }
  service_count = 0
  process_min_avail = 1
  process_limit = 4
  ${run.chroot ? "" : "chroot ="}
}
service imap {
  service_count = 0
  process_min_avail = 2
  process_limit = 64
}
service imap-urlauth-login {
  process_limit = 1
}
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
  ${run.chroot ? "" : "chroot ="}
}
`;
}

/** Polls the port until Dovecot greets (`* OK`), or it exited, or 20 s passed. */
async function waitForGreeting(host: string, port: number, dead: () => boolean, deadlineMs = 20_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  for (;;) {
    if (dead()) throw new Error("dovecot exited while starting");
    if (await greets(host, port)) return;
    if (Date.now() > until) throw new Error(`dovecot did not greet on ${host}:${port} within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 50)); // poll interval: it usually starts in ~100 ms
  }
}

function greets(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, host);
    let buf = "";
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(2000, () => done(false));
    s.on("error", () => done(false));
    s.on("data", (d: Buffer) => {
      buf += d.toString("latin1");
      if (buf.includes("\r\n")) done(buf.startsWith("* OK"));
    });
  });
}
