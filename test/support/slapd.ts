/**
 * Test harness: a private OpenLDAP `slapd` (Debian packages `slapd` and `ldap-utils`) as a plain
 * process on free ports, from a temporary slapd.conf (`-f`), mdb database in a temporary dir, data
 * loaded with `slapadd -q` before the server starts, readiness polled, stopped and removed after.
 *
 * Quirks worth knowing (OpenLDAP 2.5.13, Debian 12):
 * - `slapadd` bypasses overlays, so the memberof overlay does not fill `memberOf` for loaded data:
 *   the generator below writes `memberOf` itself (direct memberships, what the overlay would have
 *   written). The overlay is still loaded: it defines the `memberOf` attribute type, and it keeps
 *   `memberOf` up to date for changes made over LDAP.
 * - The default size limit (500) also caps the total of a paged search (`size.prtotal` defaults to
 *   the hard limit): the service account gets `limits … size=unlimited`; `LIMITED_DN` keeps the
 *   defaults, to show what a directory without that grant does.
 * - The mdb map size defaults to 10 MB: `maxsize` is raised for the 100,000-member bench.
 * - `-d 0` keeps slapd in the foreground (a child we can signal) without debug output.
 * - Disabled accounts are marked `employeeType: disabled` (plain inetOrgPerson, no ppolicy schema);
 *   the matching enabled filter is `ENABLED_FILTER`.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, type WriteStream } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { Client } from "ldapts";
import { freePort } from "../../src/infra/redis-process.js";

const run = promisify(execFile);

export const SUFFIX = "dc=example,dc=org";
export const ADMIN_DN = `cn=admin,${SUFFIX}`;
export const ADMIN_PASSWORD = "admin-secret";
/** The account Airlock binds as: read access, no size limit. */
export const SERVICE_DN = `cn=airlock,ou=services,${SUFFIX}`;
export const SERVICE_PASSWORD = "airlock-secret";
/** A second account with slapd's default limits (500 entries per search, paged or not). */
export const LIMITED_DN = `cn=limited,ou=services,${SUFFIX}`;
export const LIMITED_PASSWORD = "limited-secret";
/** Matches enabled accounts in the generated directory. */
export const ENABLED_FILTER = "(!(employeeType=disabled))";

const SCHEMA_DIR = "/etc/ldap/schema";
const MODULE_DIR = "/usr/lib/ldap";
const SLAPD = "/usr/sbin/slapd";
const SLAPADD = "/usr/sbin/slapadd";

export interface TestSlapd {
  /** ldap://127.0.0.1:PORT (StartTLS available when started with `tls`). */
  url: string;
  /** ldaps://127.0.0.1:PORT, with `tls`. */
  ldapsUrl?: string;
  /** The CA that signed the server certificate (PEM), with `tls`. */
  caPem?: string;
  dir: string;
  /** Milliseconds `slapadd` took to load the data. */
  loadMs: number;
  /** SIGTERM (SIGKILL after 5 s); resolves once slapd is gone. The port then refuses connections. */
  stop(): Promise<void>;
  /** SIGSTOP: the kernel still accepts connections, nothing answers (a hung directory). */
  pause(): void;
  /** SIGCONT after `pause`. */
  resume(): void;
  /** Stops and removes the temporary directory. */
  cleanup(): Promise<void>;
}

export async function startSlapd(opts: { ldifFile: string; tls?: boolean }): Promise<TestSlapd> {
  const dir = mkdtempSync(join(tmpdir(), "airlock-slapd-"));
  const db = join(dir, "db");
  mkdirSync(db);
  const port = await freePort();
  const ldapsPort = opts.tls ? await freePort() : undefined;
  let caPem: string | undefined;
  let tlsLines = "";
  if (opts.tls) {
    caPem = await makeCertificates(dir);
    tlsLines = [
      `TLSCACertificateFile ${join(dir, "ca.pem")}`,
      `TLSCertificateFile ${join(dir, "server.pem")}`,
      `TLSCertificateKeyFile ${join(dir, "server.key")}`,
    ].join("\n");
  }
  const conf = join(dir, "slapd.conf");
  writeFileSync(
    conf,
    `include ${SCHEMA_DIR}/core.schema
include ${SCHEMA_DIR}/cosine.schema
include ${SCHEMA_DIR}/inetorgperson.schema
modulepath ${MODULE_DIR}
moduleload back_mdb
moduleload memberof
pidfile ${join(dir, "slapd.pid")}
argsfile ${join(dir, "slapd.args")}
loglevel none
${tlsLines}
sizelimit 500

database mdb
maxsize 4294967296
suffix "${SUFFIX}"
rootdn "${ADMIN_DN}"
rootpw ${ADMIN_PASSWORD}
directory ${db}
index objectClass eq
index memberOf eq
index uid eq
limits dn.exact="${SERVICE_DN}" size=unlimited time=unlimited
access to attrs=userPassword by anonymous auth by * none
access to * by users read by * none
overlay memberof
`,
  );

  const t0 = Date.now();
  try {
    await run(SLAPADD, ["-q", "-f", conf, "-l", opts.ldifFile], { maxBuffer: 16 * 1024 * 1024 });
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    const err = e as NodeJS.ErrnoException & { stderr?: string };
    if (err.code === "ENOENT") throw new Error("slapadd not found: apt-get install -y slapd ldap-utils");
    throw new Error(`slapadd failed: ${err.stderr ?? err.message}`);
  }
  const loadMs = Date.now() - t0;

  const url = `ldap://127.0.0.1:${port}`;
  const ldapsUrl = ldapsPort ? `ldaps://127.0.0.1:${ldapsPort}` : undefined;
  const listen = [`${url}/`, ...(ldapsUrl ? [`${ldapsUrl}/`] : [])].join(" ");
  const child: ChildProcess = spawn(SLAPD, ["-f", conf, "-h", listen, "-d", "0"], { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-5000)));
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  let startError: Error | undefined;
  child.once("error", (e) => (startError = e));

  // Poll until a bind and a base search succeed: no fixed sleep.
  const deadline = Date.now() + 20_000;
  try {
    for (;;) {
      if (startError) throw new Error(`cannot start slapd (${startError.message}): apt-get install -y slapd ldap-utils`);
      if (child.exitCode !== null) throw new Error(`slapd exited with ${child.exitCode}: ${stderr}`);
      if (await answers(url)) break;
      if (Date.now() > deadline) throw new Error(`slapd did not answer within 20 s: ${stderr}`);
      await new Promise((r) => setTimeout(r, 25)); // poll interval; slapd is usually up in < 100 ms
    }
  } catch (e) {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) child.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }

  const gone = () => child.exitCode !== null || child.signalCode !== null;
  const stop = async () => {
    if (gone()) return;
    child.kill("SIGCONT"); // a paused slapd cannot handle SIGTERM
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(timer);
  };
  return {
    url,
    ldapsUrl,
    caPem,
    dir,
    loadMs,
    stop,
    pause: () => void (gone() || child.kill("SIGSTOP")),
    resume: () => void (gone() || child.kill("SIGCONT")),
    async cleanup() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function answers(url: string): Promise<boolean> {
  const c = new Client({ url, timeout: 1000, connectTimeout: 1000 });
  try {
    await c.bind(ADMIN_DN, ADMIN_PASSWORD);
    const r = await c.search(SUFFIX, { scope: "base", attributes: ["1.1"] });
    return r.searchEntries.length === 1;
  } catch {
    return false;
  } finally {
    await c.unbind().catch(() => {});
  }
}

/** A throw-away CA and a server certificate for 127.0.0.1/localhost (openssl CLI, EC P-256). Returns the CA PEM. */
async function makeCertificates(dir: string): Promise<string> {
  const p = (f: string) => join(dir, f);
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await run("openssl", ["req", "-x509", ...ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=Airlock test CA"]);
  await run("openssl", ["req", ...ec, "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=localhost"]);
  writeFileSync(p("ext.cnf"), "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n");
  await run("openssl", ["x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial", "-out", p("server.pem"), "-days", "2", "-extfile", p("ext.cnf")]);
  return readFileSync(p("ca.pem"), "utf8");
}

// ---------------------------------------------------------------------------------------------
// The test directory

/** An LDIF writer that streams (a 100,000-member group is written without building it in memory). */
class LdifWriter {
  private buf = "";
  constructor(private readonly out: WriteStream) {}

  async entry(dn: string, attrs: Array<[string, string]>): Promise<void> {
    this.buf += line("dn", dn);
    for (const [k, v] of attrs) this.buf += line(k, v);
    this.buf += "\n";
    if (this.buf.length > 1 << 16) await this.flush();
  }

  /** The start of an entry whose attribute lines follow with `attr` (for a large group). */
  async begin(dn: string, attrs: Array<[string, string]>): Promise<void> {
    this.buf += line("dn", dn);
    for (const [k, v] of attrs) await this.attr(k, v);
  }

  async attr(k: string, v: string): Promise<void> {
    this.buf += line(k, v);
    if (this.buf.length > 1 << 16) await this.flush();
  }

  async end(): Promise<void> {
    this.buf += "\n";
    await this.flush();
  }

  async flush(): Promise<void> {
    if (this.buf === "") return;
    const chunk = this.buf;
    this.buf = "";
    if (!this.out.write(chunk)) await once(this.out, "drain");
  }

  async close(): Promise<void> {
    await this.flush();
    this.out.end();
    await once(this.out, "finish");
  }
}

/** One LDIF line; base64 (`::`) when the value is not a SAFE-STRING (RFC 2849): NUL, non-ASCII, leading space/colon/<, trailing space. */
function line(k: string, v: string): string {
  const safe = /^[\x20-\x7e]*$/.test(v) && !/^[ :<]/.test(v) && !/ $/.test(v);
  return safe ? `${k}: ${v}\n` : `${k}:: ${Buffer.from(v, "utf8").toString("base64")}\n`;
}

const people = `ou=people,${SUFFIX}`;
const groupsOu = `ou=groups,${SUFFIX}`;
/** An OU whose name would turn `(memberOf=<a group under it>)` into `…)(objectClass=*)(…` without escaping. */
export const EVIL_OU = `ou=a)(objectClass=*)(ou=b,${SUFFIX}`;
const uid = (u: string) => `uid=${u},${people}`;
const cn = (g: string, ou = groupsOu) => `cn=${g},${ou}`;

export interface LargeGroupFacts {
  dn: string;
  size: number;
  recipients: number;
  disabled: number;
  withoutMail: number;
}

export interface TestDirectory {
  groups: {
    /** A ⊃ B ⊃ C, with duplicates (grace in A and B, frank in B and C, one address on two entries in C). */
    A: string;
    B: string;
    C: string;
    /** D ⊃ E ⊃ D. */
    D: string;
    E: string;
    /** A group that is its own member. */
    S: string;
    /** cn with `*`, `(`, `)`, `\`, NUL. */
    meta: string;
    /** A sibling of `meta` whose name a wildcard would match (`star…`). */
    metaSibling: string;
    /** Root of the injection scenario: contains ivan and `evil` (under EVIL_OU). */
    injRoot: string;
    evil: string;
    /** A group whose only member value points at no entry. */
    dangling: string;
    /** A person, not a group. */
    notAGroup: string;
    large?: LargeGroupFacts;
  };
  /** Every enabled person with a valid mail in the directory (for "would have widened to" checks). */
  everyoneCount: number;
}

interface Person {
  uid: string;
  mail?: string;
  disabled?: boolean;
}

/**
 * Writes the test directory to `file`:
 * - A(alice, grace, B) ⊃ B(bob, dave[disabled], grace, frank, C) ⊃ C(carol, erin[no mail], frank,
 *   team1 "Team@Example.org", team2 "team@example.org", heidi[invalid mail]);
 * - D(dora, E) ⊃ E(eve, D): a cycle; S(sam, S): a self-member;
 * - meta: `cn=star*(paren)\back` + NUL, with mia; metaSibling `cn=star-sibling` with sid;
 * - injRoot(ivan, evil) where evil sits under EVIL_OU and contains judy;
 * - dangling: one member value naming no entry; notAGroup: a person's DN;
 * - with `largeGroupSize`: `cn=large` with that many people `l0000001…` (every 1000th without mail,
 *   every 500th disabled, offset so they never coincide).
 */
export async function writeTestDirectory(file: string, opts: { largeGroupSize?: number } = {}): Promise<TestDirectory> {
  const w = new LdifWriter(createWriteStream(file));
  const metaCn = "star*(paren)\\back\u0000nul";
  const meta = `cn=${metaCn.replace("\\", "\\5C").replace("\u0000", "\\00")},${groupsOu}`;
  const evil = cn("evil", EVIL_OU);
  const persons: Person[] = [
    { uid: "alice", mail: "Alice@Example.org" },
    { uid: "grace", mail: "grace@example.org" },
    { uid: "bob", mail: "bob@example.org" },
    { uid: "dave", mail: "dave@example.org", disabled: true },
    { uid: "frank", mail: "frank@example.org" },
    { uid: "carol", mail: "carol@example.org" },
    { uid: "erin" },
    { uid: "team1", mail: "Team@Example.org" },
    { uid: "team2", mail: "team@example.org" },
    { uid: "heidi", mail: "heidi at example.org" },
    { uid: "dora", mail: "dora@example.org" },
    { uid: "eve", mail: "eve@example.org" },
    { uid: "sam", mail: "sam@example.org" },
    { uid: "mia", mail: "mia@example.org" },
    { uid: "sid", mail: "sid@example.org" },
    { uid: "ivan", mail: "ivan@example.org" },
    { uid: "judy", mail: "judy@example.org" },
    { uid: "oscar", mail: "oscar@example.org" }, // in no group at all
  ];
  const groupDefs: Array<{ dn: string; cn: string; members: string[] }> = [
    { dn: cn("A"), cn: "A", members: [uid("alice"), uid("grace"), cn("B")] },
    { dn: cn("B"), cn: "B", members: [uid("bob"), uid("dave"), uid("grace"), uid("frank"), cn("C")] },
    { dn: cn("C"), cn: "C", members: ["carol", "erin", "frank", "team1", "team2", "heidi"].map(uid) },
    { dn: cn("D"), cn: "D", members: [uid("dora"), cn("E")] },
    { dn: cn("E"), cn: "E", members: [uid("eve"), cn("D")] },
    { dn: cn("S"), cn: "S", members: [uid("sam"), cn("S")] },
    { dn: meta, cn: metaCn, members: [uid("mia")] },
    { dn: cn("star-sibling"), cn: "star-sibling", members: [uid("sid")] },
    { dn: cn("inj-root"), cn: "inj-root", members: [uid("ivan"), evil] },
    { dn: evil, cn: "evil", members: [uid("judy")] },
    { dn: cn("dangling"), cn: "dangling", members: [uid("ghost")] },
  ];
  // What the memberof overlay would have written: each entry's direct groups.
  const memberOf = new Map<string, string[]>();
  for (const g of groupDefs) for (const m of g.members) memberOf.set(m, [...(memberOf.get(m) ?? []), g.dn]);
  const mo = (dn: string): Array<[string, string]> => (memberOf.get(dn) ?? []).map((g) => ["memberOf", g]);

  await w.entry(SUFFIX, [["objectClass", "dcObject"], ["objectClass", "organization"], ["o", "Example"], ["dc", "example"]]);
  for (const ou of ["people", "groups", "services"]) await w.entry(`ou=${ou},${SUFFIX}`, [["objectClass", "organizationalUnit"], ["ou", ou]]);
  await w.entry(EVIL_OU, [["objectClass", "organizationalUnit"], ["ou", "a)(objectClass=*)(ou=b"]]);
  for (const [dn, name, pw] of [[SERVICE_DN, "airlock", SERVICE_PASSWORD], [LIMITED_DN, "limited", LIMITED_PASSWORD]] as const) {
    await w.entry(dn, [["objectClass", "applicationProcess"], ["objectClass", "simpleSecurityObject"], ["cn", name], ["userPassword", pw]]);
  }
  const person = (p: Person, extra: Array<[string, string]>): Array<[string, string]> => [
    ["objectClass", "inetOrgPerson"],
    ["uid", p.uid],
    ["cn", p.uid],
    ["sn", p.uid],
    ...(p.mail ? ([["mail", p.mail]] as Array<[string, string]>) : []),
    ...(p.disabled ? ([["employeeType", "disabled"]] as Array<[string, string]>) : []),
    ...extra,
  ];
  for (const p of persons) await w.entry(uid(p.uid), person(p, mo(uid(p.uid))));
  let everyoneCount = persons.filter((p) => p.mail && !p.disabled && p.uid !== "heidi" && p.uid !== "team2").length;

  let large: LargeGroupFacts | undefined;
  const n = opts.largeGroupSize ?? 0;
  const largeDn = cn("large");
  if (n > 0) {
    large = { dn: largeDn, size: n, recipients: 0, disabled: 0, withoutMail: 0 };
    for (let i = 1; i <= n; i++) {
      const id = `l${String(i).padStart(7, "0")}`;
      const noMail = i % 1000 === 999;
      const disabled = i % 500 === 250;
      if (disabled) large.disabled += 1;
      else if (noMail) large.withoutMail += 1;
      else large.recipients += 1;
      await w.entry(uid(id), person({ uid: id, mail: noMail ? undefined : `${id}@example.org`, disabled }, [["memberOf", largeDn]]));
    }
    everyoneCount += large.recipients;
  }

  for (const g of groupDefs) {
    await w.entry(g.dn, [["objectClass", "groupOfNames"], ["cn", g.cn], ...g.members.map((m): [string, string] => ["member", m]), ...mo(g.dn)]);
  }
  // A person's DN, to check that a non-group is refused: alice is written above.
  if (n > 0) {
    await w.begin(largeDn, [["objectClass", "groupOfNames"], ["cn", "large"]]);
    for (let i = 1; i <= n; i++) await w.attr("member", uid(`l${String(i).padStart(7, "0")}`));
    await w.end();
  }
  await w.close();

  return {
    groups: {
      A: cn("A"),
      B: cn("B"),
      C: cn("C"),
      D: cn("D"),
      E: cn("E"),
      S: cn("S"),
      meta,
      metaSibling: cn("star-sibling"),
      injRoot: cn("inj-root"),
      evil,
      dangling: cn("dangling"),
      notAGroup: uid("alice"),
      large,
    },
    everyoneCount,
  };
}

/** A scratch directory for an LDIF file; removed by the returned function. */
export function scratchDir(): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), "airlock-ldif-"));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}
