/**
 * Directory audiences end to end (issue 15): a whole Airlock against a real OpenLDAP slapd loaded
 * with the test directory (nested groups, a cycle, disabled accounts, members without mail, group
 * names made of filter metacharacters). Defining, resolving at submit and at edit, the approval
 * request's "resolved from" line, the change limit and an admin's confirmation, a refused bind, and
 * the directory stopped: 503 naming the audience, no scratch key left, the message as it was.
 */
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { Attribute, Change, Client } from "ldapts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/config.js";
import { keys } from "../../src/store/keys.js";
import { DirectoryError } from "../../src/directory/ldap-directory.js";
import { DomainError } from "../../src/domain/errors.js";
import { DirectoryAudiences, type GroupResolver } from "../../src/service/directory-audiences.js";
import { startAirlock, USERS, type TestAirlock } from "../support/airlock.js";
import { dashboardClient } from "../support/dashboard-client.js";
import { ADMIN_DN, ADMIN_PASSWORD, ENABLED_FILTER, SERVICE_DN, SERVICE_PASSWORD, SUFFIX, scratchDir, startSlapd, writeTestDirectory, type TestDirectory, type TestSlapd } from "../support/slapd.js";

let slapd: TestSlapd;
let fixture: TestDirectory;
let scratch: { dir: string; remove: () => void };
let a: TestAirlock;
let passwordFile: string;

const MOVERS = `cn=movers,ou=groups,${SUFFIX}`;
const PLACEHOLDER = `cn=placeholder,ou=groups,${SUFFIX}`;
const mover = (i: number) => `uid=mover${String(i).padStart(2, "0")},ou=people,${SUFFIX}`;

beforeAll(async () => {
  scratch = scratchDir();
  const ldif = join(scratch.dir, "directory.ldif");
  fixture = await writeTestDirectory(ldif);
  slapd = await startSlapd({ ldifFile: ldif });
  passwordFile = join(scratch.dir, "bind-password");
  writeFileSync(passwordFile, `${SERVICE_PASSWORD}\n`);
  a = await startAirlock({
    DIRECTORY_URL: slapd.url,
    DIRECTORY_BIND_DN: SERVICE_DN,
    DIRECTORY_BIND_PASSWORD_FILE: passwordFile,
    DIRECTORY_BASE_DN: SUFFIX,
    DIRECTORY_ENABLED_FILTER: ENABLED_FILTER,
    DIRECTORY_TIMEOUT_MS: "2000",
    APPROVALS_REQUIRED: "1",
  });
  // A group of ten added over LDAP (the memberof overlay writes memberOf), changed by the tests below.
  await asAdmin(async (c) => {
    for (let i = 1; i <= 10; i++) {
      const uid = `mover${String(i).padStart(2, "0")}`;
      await c.add(mover(i), { objectClass: "inetOrgPerson", uid, cn: uid, sn: uid, mail: `${uid}@example.org` });
    }
    await c.add(MOVERS, { objectClass: "groupOfNames", cn: "movers", member: Array.from({ length: 10 }, (_, i) => mover(i + 1)) });
    // groupOfNames needs a member: a nested group of nobody keeps `movers` a group once its people are gone.
    await c.add(PLACEHOLDER, { objectClass: "groupOfNames", cn: "placeholder", member: `uid=nobody,ou=people,${SUFFIX}` });
  });
});

afterAll(async () => {
  await a?.stop();
  await slapd?.cleanup();
  scratch?.remove();
});

async function asAdmin(f: (c: Client) => Promise<void>): Promise<void> {
  const c = new Client({ url: slapd.url, timeout: 5000 });
  try {
    await c.bind(ADMIN_DN, ADMIN_PASSWORD);
    await f(c);
  } finally {
    await c.unbind().catch(() => {});
  }
}

const removeMembers = (...dns: string[]) => asAdmin((c) => c.modify(MOVERS, [new Change({ operation: "delete", modification: new Attribute({ type: "member", values: dns }) })]));
const addMembers = (...dns: string[]) => asAdmin((c) => c.modify(MOVERS, [new Change({ operation: "add", modification: new Attribute({ type: "member", values: dns }) })]));

const define = (who: "author" | "author2" | "admin", name: string, directoryGroup: unknown, extra: Record<string, unknown> = {}) =>
  a.call(who, "POST", "/api/audiences", { name, directoryGroup, ...extra });
const show = async (name: string) => (await a.call("ops", "GET", `/api/audiences/${name}`)).body;
const members = (name: string) => a.rt.redis.zrange(keys.audience(name), "0", "-1");
const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
const draft = async (lists: string[]) => (await a.call("author", "POST", "/api/messages", { draft: true, subject: "All hands", text: "Friday at ten.", audience: { lists } })).body.id as string;
/** Keys an upload or a resolution writes before its commit: none may outlive a refusal. */
const scratchKeys = () => a.rt.redis.keys("{airlock}:upload:*");
const resolutions = async (name: string) =>
  (await a.rt.redis.xrange(keys.auditAll(), "-", "+"))
    .map(([, flat]) => Object.fromEntries(Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i]!, flat[2 * i + 1]!])) as Record<string, string>)
    .filter((f) => f.action === "audienceResolve" && (JSON.parse(f.detail!) as { audience?: string }).audience === name);

describe("settings", () => {
  const base = { DIRECTORY_URL: "ldaps://ldap.corp.example", DIRECTORY_BIND_DN: "cn=airlock,dc=corp", DIRECTORY_BIND_PASSWORD: "x", DIRECTORY_BASE_DN: "dc=corp" };
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig({ NODE_ENV: "test", ...env });
      return [];
    } catch (e) {
      if (e instanceof ConfigError) return e.problems;
      throw e;
    }
  };

  it("names each bad or missing directory variable at start", () => {
    expect(problems(base)).toEqual([]);
    expect(problems({ DIRECTORY_URL: "ldaps://ldap.corp.example" })).toEqual([
      "DIRECTORY_BIND_DN: required with DIRECTORY_URL",
      "DIRECTORY_BASE_DN: required with DIRECTORY_URL",
      "DIRECTORY_BIND_PASSWORD: give exactly one of DIRECTORY_BIND_PASSWORD and DIRECTORY_BIND_PASSWORD_FILE",
    ]);
    expect(problems({ ...base, DIRECTORY_URL: "http://ldap.corp.example" })[0]).toMatch(/^DIRECTORY_URL: /);
    expect(problems({ ...base, DIRECTORY_BASE_DN: "dc=corp,,x" })[0]).toMatch(/^DIRECTORY_BASE_DN: is not a valid DN/);
    expect(problems({ ...base, DIRECTORY_ENABLED_FILTER: "(&(a=b)" })[0]).toMatch(/^DIRECTORY_ENABLED_FILTER: is not an LDAP filter/);
    expect(problems({ ...base, DIRECTORY_MAIL_ATTRIBUTE: "mail)(x=*" })[0]).toMatch(/^DIRECTORY_MAIL_ATTRIBUTE: must be an attribute name/);
    expect(problems({ ...base, DIRECTORY_STARTTLS: "true" })).toEqual(["DIRECTORY_STARTTLS: for ldap:// URLs (ldaps:// is TLS already)"]);
    expect(problems({ ...base, DIRECTORY_MAX_CHANGE_PERCENT: "-1" })[0]).toMatch(/^DIRECTORY_MAX_CHANGE_PERCENT: /);
    expect(problems({ DIRECTORY_BIND_DN: "cn=x" })).toEqual(["DIRECTORY_BIND_DN: set without DIRECTORY_URL (set DIRECTORY_URL to use a directory, or unset DIRECTORY_BIND_DN)"]);
    expect(loadConfig({ NODE_ENV: "test", ...base }).DIRECTORY_MAX_CHANGE_PERCENT).toBe(20);
  });

  it("without a directory, a directoryGroup audience is a clear 422", async () => {
    const plain = await startAirlock();
    try {
      const r = await plain.call("author", "POST", "/api/audiences", { name: "staff", directoryGroup: fixture.groups.A });
      expect(r.status).toBe(422);
      expect(r.body.error).toMatchObject({ code: "directory_not_configured" });
      expect(r.body.error.message).toContain("DIRECTORY_URL");
      expect((await plain.call("ops", "GET", "/api/audiences/staff")).status).toBe(404);
    } finally {
      await plain.stop();
    }
  });
});

describe("with ALLOWED_RECIPIENT_DOMAINS", () => {
  it("refuses a group with members outside the allowed domains, naming them, and creates nothing", async () => {
    const strict = await startAirlock({
      ALLOWED_RECIPIENT_DOMAINS: "corp.example",
      DIRECTORY_URL: slapd.url,
      DIRECTORY_BIND_DN: SERVICE_DN,
      DIRECTORY_BIND_PASSWORD: SERVICE_PASSWORD,
      DIRECTORY_BASE_DN: SUFFIX,
    });
    try {
      const r = await strict.call("author", "POST", "/api/audiences", { name: "outside", directoryGroup: fixture.groups.D });
      expect(r.status).toBe(400);
      expect(r.body.error.code).toBe("invalid_input");
      expect(r.body.error.message).toContain(`directory group ${fixture.groups.D}`);
      expect(r.body.error.message).toContain("dora@example.org");
      expect(r.body.error.message).toContain("outside the allowed recipient domains");
      expect((await strict.call("ops", "GET", "/api/audiences/outside")).status).toBe(404);
      expect(await strict.rt.redis.keys("{airlock}:upload:*")).toEqual([]);
    } finally {
      await strict.stop();
    }
  });
});

describe("defining a directory audience", () => {
  it("resolves nested groups, leaves out disabled accounts and members without mail (counted and listed), and shows it as a directory audience", async () => {
    const r = await define("author", "nested", fixture.groups.A);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ name: "nested", size: 6, version: 1, added: 6, removed: 0, owner: USERS.author.email });
    expect(r.body.directory).toMatchObject({ group: fixture.groups.A, first: true, disabled: 1, nestedGroups: 2, withoutMail: { count: 1 }, invalidMail: { count: 1 } });
    expect(r.body.directory.withoutMail.first).toEqual([`uid=erin,ou=people,${SUFFIX}`]);
    expect(await members("nested")).toEqual(["alice@example.org", "bob@example.org", "carol@example.org", "frank@example.org", "grace@example.org", "team@example.org"]);
    const shown = await show("nested");
    expect(shown.directory).toMatchObject({ group: fixture.groups.A, withoutMail: { count: 1, first: [`uid=erin,ou=people,${SUFFIX}`] }, disabled: 1 });
    expect(shown.versions[0]).toMatchObject({ version: 1, size: 6, added: 6, removed: 0, directory: { group: fixture.groups.A } });
  });

  it("walks a cycle once", async () => {
    const r = await define("author", "cycle", fixture.groups.D);
    expect(r.status).toBe(201);
    expect(await members("cycle")).toEqual(["dora@example.org", "eve@example.org"]);
    expect(r.body.directory.cycles).toBe(1);
  });

  it("refuses a malformed DN with a 400 naming it, and an unknown group with a 422; nothing is created", async () => {
    for (const dn of ["cn=A,,ou=groups", "not a dn", "cn=x;ou=y", "cn= x", ""]) {
      const r = await define("author", "broken", dn);
      expect(r.status, dn).toBe(400);
      expect(r.body.error.code).toBe("invalid_input");
      expect(JSON.stringify(r.body.error.details)).toContain("directoryGroup");
    }
    const wrongType = await define("author", "broken", 42);
    expect(wrongType.status).toBe(400);
    const missing = await define("author", "broken", `cn=nobody,ou=groups,${SUFFIX}`);
    expect(missing.status).toBe(422);
    expect(missing.body.error).toMatchObject({ code: "directory_group_not_found", details: { audience: "broken" } });
    const person = await define("author", "broken", fixture.groups.notAGroup);
    expect(person.status).toBe(422);
    const both = await a.call("author", "POST", "/api/audiences", { name: "broken", directoryGroup: fixture.groups.A, recipients: [] });
    expect(both.status).toBe(400);
    expect((await a.call("ops", "GET", "/api/audiences/broken")).status).toBe(404);
    expect(await scratchKeys()).toEqual([]);
  });

  it("makes filter injection through a group name impossible: metacharacters match only their own group", async () => {
    // `*` as a group name would be a wildcard unescaped: it must find no group, not every group.
    for (const dn of [`cn=*,ou=groups,${SUFFIX}`, `cn=x)(|(objectClass=*,ou=groups,${SUFFIX}`, `cn=A)(cn=*,ou=groups,${SUFFIX}`]) {
      const r = await define("author", "star", dn);
      expect(r.status, dn).toBe(422);
      expect(r.body.error.code).toBe("directory_group_not_found");
    }
    const meta = await define("author", "meta", fixture.groups.meta);
    expect(meta.status).toBe(201);
    expect(await members("meta")).toEqual(["mia@example.org"]);
    // A nested group under an OU named `a)(objectClass=*)(ou=b`: the filter stays one equality.
    const inj = await define("author", "inj", fixture.groups.injRoot);
    expect(inj.status).toBe(201);
    expect(await members("inj")).toEqual(["ivan@example.org", "judy@example.org"]);
    expect(fixture.everyoneCount).toBeGreaterThan(2);
  });

  it("keeps owner rules: another author may not redefine it, an admin may", async () => {
    const r = await define("author2", "nested", fixture.groups.D);
    expect(r.status).toBe(403);
    expect(r.body.error.details).toEqual({ owner: USERS.author.email });
    expect(await members("nested")).toHaveLength(6);
    expect((await a.call("author", "POST", "/api/audiences/nested/resolve", {})).status).toBe(200);
    expect((await a.call("author2", "POST", "/api/audiences/nested/resolve", {})).status).toBe(403);
  });
});

describe("resolved at submit", () => {
  it("resolves at submit into a new audited version, and the approval request says from which group, when, and what changed", async () => {
    expect((await define("author", "movers", MOVERS)).status).toBe(201);
    await removeMembers(mover(10)); // 10 → 9: 10%, inside the limit
    const before = (await show("movers")).version;
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Movers' day", text: "Boxes at nine.", audience: { lists: ["movers"] } })).body;
    expect(m.state).toBe("pending_approval");
    expect(m.recipientCount).toBe(9);
    const shown = await show("movers");
    expect(shown.version).toBe(before + 1);
    expect(shown.versions[0]).toMatchObject({ size: 9, added: 0, removed: 1, by: USERS.author.email, directory: { group: MOVERS, first: false } });
    const audited = await resolutions("movers");
    expect(JSON.parse(audited.at(-1)!.detail!)).toMatchObject({ audience: "movers", size: 9, added: 0, removed: 1, directory: { group: MOVERS } });
    expect(audited.at(-1)!.actor).toBe(USERS.author.email);

    const mail = await a.until("the approval request", () =>
      a.sink.received.find((r) => r.to.includes(USERS.approver1.email) && String(r.mail.subject).includes("Movers' day")),
    );
    const line = /resolved from (.+) at (.+ UTC): 9 recipients \(\+0, −1 since the last resolution\)/.exec(mail.mail.text ?? "");
    expect(line, mail.mail.text).not.toBeNull();
    expect(line![1]).toBe(MOVERS);
    expect(mail.mail.html).toContain("9 recipients (+0, −1 since the last resolution)");

    const { signIn } = dashboardClient(() => a.url);
    const page = await (await signIn("approver1")).get(`/messages/${m.id}/review`);
    expect(page.status).toBe(200);
    expect(page.html).toContain("9 recipients (+0, −1 since the last resolution)");
    await addMembers(mover(10));
  });

  it("resolves again when a pending message is edited (a new revision freezes anew)", async () => {
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Edit me", text: "v1", audience: { lists: ["movers"] } })).body;
    const v = (await show("movers")).version;
    const r = await a.call("author", "PUT", `/api/messages/${m.id}`, { subject: "Edit me", text: "v2", audience: { lists: ["movers"] } });
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ revision: 2, recipientCount: 10 });
    expect((await show("movers")).version).toBe(v + 1);
  });

  it("refuses a change over DIRECTORY_MAX_CHANGE_PERCENT with a 409 naming the numbers, until an admin confirms the new baseline", async () => {
    const id = await draft(["movers"]);
    const v = (await show("movers")).version;
    await removeMembers(mover(1), mover(2), mover(3)); // 10 → 7: 30%
    const r = await a.call("author", "POST", `/api/messages/${id}/submit`, {});
    expect(r.status).toBe(409);
    expect(r.body.error).toMatchObject({
      code: "directory_change_refused",
      details: { audience: "movers", recipients: 7, lastResolution: 10, added: 0, removed: 3, changePercent: 30, maxChangePercent: 20 },
    });
    expect(r.body.error.message).toContain("30%");
    expect(r.body.error.message).toContain("/api/audiences/movers/resolve");
    // Nothing changed: the draft, the audience's version and members, no scratch key.
    expect(await get(id)).toMatchObject({ state: "draft", revision: 1 });
    expect((await show("movers")).version).toBe(v);
    expect(await members("movers")).toHaveLength(10);
    expect(await scratchKeys()).toEqual([]);

    // Only an admin confirms; the author asking to is refused, and resolving without confirming is refused again.
    expect((await a.call("author", "POST", "/api/audiences/movers/resolve", { confirm: true })).status).toBe(403);
    expect((await a.call("admin", "POST", "/api/audiences/movers/resolve", {})).status).toBe(409);
    const ok = await a.call("admin", "POST", "/api/audiences/movers/resolve", { confirm: true });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ size: 7, added: 0, removed: 3, version: v + 1, directory: { confirmedBy: USERS.admin.email } });
    const again = await a.call("author", "POST", `/api/messages/${id}/submit`, {});
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ state: "pending_approval", recipientCount: 7 });
    await addMembers(mover(1), mover(2), mover(3));
    expect((await a.call("admin", "POST", "/api/audiences/movers/resolve", { confirm: true })).body.size).toBe(10);
  });

  it("refuses a resolution of 0 recipients with a 422, and an admin's confirmation empties the audience, which no message can then be sent to", async () => {
    const id = await draft(["movers"]);
    const all = Array.from({ length: 10 }, (_, i) => mover(i + 1));
    await addMembers(PLACEHOLDER);
    await removeMembers(...all);
    const r = await a.call("author", "POST", `/api/messages/${id}/submit`, {});
    expect(r.status).toBe(422);
    expect(r.body.error).toMatchObject({ code: "directory_empty", details: { audience: "movers", recipients: 0, lastResolution: 10 } });
    expect(await members("movers")).toHaveLength(10);
    expect(await scratchKeys()).toEqual([]);
    const ok = await a.call("admin", "POST", "/api/audiences/movers/resolve", { confirm: true });
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ size: 0, removed: 10 });
    const still = await a.call("author", "POST", `/api/messages/${id}/submit`, {});
    expect(still.status).toBe(422);
    expect(still.body.error.code).toBe("directory_empty");
    expect(await get(id)).toMatchObject({ state: "draft" });
    // Refilled, it resolves as a new baseline (nothing to compare an empty resolution with).
    await addMembers(...all);
    expect((await a.call("author", "POST", `/api/messages/${id}/submit`, {})).body).toMatchObject({ state: "pending_approval", recipientCount: 10 });
  });
});

describe("directory failures", () => {
  it("a refused bind is a 503 naming the audience, and nothing changes", async () => {
    const id = await draft(["nested"]);
    const v = (await show("nested")).version;
    writeFileSync(passwordFile, "wrong-password\n"); // read at each resolution
    try {
      const r = await a.call("author", "POST", `/api/messages/${id}/submit`, {});
      expect(r.status).toBe(503);
      expect(r.body.error).toMatchObject({ code: "directory_unavailable", details: { audience: "nested", directory: "bind_failed" } });
      expect(r.body.error.message).toContain("audience nested");
      expect(await get(id)).toMatchObject({ state: "draft", revision: 1 });
      expect((await show("nested")).version).toBe(v);
    } finally {
      writeFileSync(passwordFile, `${SERVICE_PASSWORD}\n`);
    }
  });

  it("a directory that stops answering (hung, not down) is a 503 after DIRECTORY_TIMEOUT_MS, and nothing changes", async () => {
    const id = await draft(["nested"]);
    const v = (await show("nested")).version;
    slapd.pause(); // SIGSTOP: connections are accepted, nothing answers
    try {
      const t0 = Date.now();
      const r = await a.call("author", "POST", `/api/messages/${id}/submit`, {});
      expect(r.status).toBe(503);
      expect(r.body.error).toMatchObject({ code: "directory_unavailable", details: { audience: "nested" } });
      // Bounded by the 2 s timeout (per operation), not hanging until the client gives up.
      expect(Date.now() - t0).toBeLessThan(15_000);
    } finally {
      slapd.resume();
    }
    expect(await get(id)).toMatchObject({ state: "draft", revision: 1 });
    expect((await show("nested")).version).toBe(v);
    expect(await scratchKeys()).toEqual([]);
  });

  it("a failure in the middle of a resolution, after addresses reached Redis, leaves no scratch key and the audience as it was", async () => {
    const before = await show("nested");
    let scratchSeen = 0;
    const failing: GroupResolver = {
      async resolveGroup(group, onBatch) {
        for (let page = 0; page < 3; page++) await onBatch(Array.from({ length: 1000 }, (_, i) => `p${page}-${i}@example.org`));
        scratchSeen = (await scratchKeys()).length; // the upload's chunks are in Redis by now
        throw new DirectoryError("unavailable", `Directory unavailable while reading members for group "${group}": ECONNRESET.`, group);
      },
    };
    const service = new DirectoryAudiences({ audiences: a.rt.audiences, directory: failing, maxChangePercent: 20 });
    const e = await service.resolve("nested", { email: USERS.admin.email, name: "Eli", roles: ["admin"] } as never, { anyOwner: true }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(DomainError);
    expect((e as DomainError).code).toBe("directory_unavailable");
    expect((e as DomainError).message).toMatch(/^audience nested: /);
    expect(scratchSeen).toBeGreaterThan(0);
    expect(await scratchKeys()).toEqual([]);
    expect(await show("nested")).toEqual(before);
    expect(await members("nested")).toHaveLength(6);
  });

  // Last: stops the directory for good.
  it("the directory stopped: 503 naming the audience, no partial keys, a draft stays a draft and a pending message stays as it was", async () => {
    const id = await draft(["nested"]);
    const pending = (await a.call("author", "POST", "/api/messages", { subject: "Pending", text: "v1", audience: { lists: ["nested"] } })).body;
    expect(pending.state).toBe("pending_approval");
    const v = (await show("nested")).version;
    await slapd.stop();

    const r = await a.call("author", "POST", `/api/messages/${id}/submit`, {});
    expect(r.status).toBe(503);
    expect(r.body.error).toMatchObject({ code: "directory_unavailable", details: { audience: "nested", directory: "unavailable" } });
    expect(r.body.error.message).toMatch(/^audience nested: /);
    expect(await get(id)).toMatchObject({ state: "draft", revision: 1 });

    const edit = await a.call("author", "PUT", `/api/messages/${pending.id}`, { subject: "Pending", text: "v2", audience: { lists: ["nested"] } });
    expect(edit.status).toBe(503);
    expect(await get(pending.id)).toMatchObject({ state: "pending_approval", revision: 1, text: "v1", recipientCount: 6 });

    const created = await a.call("author", "POST", "/api/messages", { subject: "New", text: "x", audience: { lists: ["nested"] } });
    expect(created.status).toBe(503);
    expect((await a.call("author", "POST", "/api/audiences/nested/resolve", {})).status).toBe(503);
    expect((await show("nested")).version).toBe(v);
    expect(await members("nested")).toHaveLength(6);
    expect(await scratchKeys()).toEqual([]);
  });
});
