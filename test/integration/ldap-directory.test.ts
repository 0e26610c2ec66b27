/**
 * LdapDirectory against a real OpenLDAP slapd (memberof overlay, data from writeTestDirectory):
 * nesting, cycles, disabled and mail-less members, duplicates, filter injection, errors, TLS, paging.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "ldapts";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DirectoryError, LdapDirectory, type GroupResolution, type LdapDirectorySettings } from "../../src/directory/ldap-directory.js";
import { normalizeDn } from "../../src/directory/group-resolution.js";
import {
  ENABLED_FILTER,
  LIMITED_DN,
  LIMITED_PASSWORD,
  SERVICE_DN,
  SERVICE_PASSWORD,
  SUFFIX,
  scratchDir,
  startSlapd,
  writeTestDirectory,
  type TestDirectory,
  type TestSlapd,
} from "../support/slapd.js";

const LARGE = 5000;
let slapd: TestSlapd;
let fixture: TestDirectory;
let scratch: { dir: string; remove: () => void };

beforeAll(async () => {
  scratch = scratchDir();
  const ldif = join(scratch.dir, "directory.ldif");
  fixture = await writeTestDirectory(ldif, { largeGroupSize: LARGE });
  slapd = await startSlapd({ ldifFile: ldif, tls: true });
});

afterAll(async () => {
  await slapd?.cleanup();
  scratch?.remove();
});

function directory(over: Partial<LdapDirectorySettings> = {}): LdapDirectory {
  return new LdapDirectory({
    url: slapd.url,
    bindDn: SERVICE_DN,
    bindPassword: SERVICE_PASSWORD,
    baseDn: SUFFIX,
    enabledFilter: ENABLED_FILTER,
    timeoutMs: 2000,
    ...over,
  });
}

async function resolve(group: string, over: Partial<LdapDirectorySettings> = {}): Promise<{ summary: GroupResolution; batches: string[][]; all: string[] }> {
  const batches: string[][] = [];
  const summary = await directory(over).resolveGroup(group, (b) => {
    batches.push(b);
  });
  return { summary, batches, all: batches.flat() };
}

async function failure(p: Promise<unknown>): Promise<DirectoryError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(DirectoryError);
  return e as DirectoryError;
}

const norm = (dns: string[]) => dns.map(normalizeDn).sort();
const noop = () => {};

describe("LdapDirectory.resolveGroup", () => {
  it("follows nested groups, excludes and counts disabled members, counts and lists members without mail, counts duplicates once", async () => {
    const { summary, all } = await resolve(fixture.groups.A);
    expect(all.sort()).toEqual(["alice@example.org", "bob@example.org", "carol@example.org", "frank@example.org", "grace@example.org", "team@example.org"]);
    expect(new Set(all).size).toBe(all.length); // every address once, across all batches
    expect(summary.recipients).toBe(6);
    expect(summary.disabled).toBe(1); // dave
    expect(summary.withoutMail).toEqual({ count: 1, first: [`uid=erin,ou=people,${SUFFIX}`] });
    expect(summary.invalidMail.count).toBe(1);
    expect(summary.invalidMail.first[0]).toMatch(/^uid=heidi,ou=people,dc=example,dc=org: /);
    expect(norm(summary.nestedGroups)).toEqual(norm([fixture.groups.B, fixture.groups.C]));
    expect(summary.cycles).toEqual([]);
    expect(normalizeDn(summary.group)).toBe(normalizeDn(fixture.groups.A));
    expect(Date.parse(summary.resolvedAt)).toBeGreaterThan(Date.now() - 60_000);
  });

  it("with distinctAddresses: false keeps no address set: an address two entries share comes twice, counted as handed over", async () => {
    const batches: string[][] = [];
    const summary = await directory().resolveGroup(fixture.groups.A, (b) => void batches.push(b), { distinctAddresses: false });
    const all = batches.flat().sort();
    // team1 and team2 both have team@example.org (one of them spelt Team@Example.org).
    expect(all).toEqual(["alice@example.org", "bob@example.org", "carol@example.org", "frank@example.org", "grace@example.org", "team@example.org", "team@example.org"]);
    expect(summary.recipients).toBe(7);
    expect(summary.disabled).toBe(1);
    expect(summary.withoutMail.count).toBe(1);
  });

  it("resolves a nested group on its own (only its own subtree)", async () => {
    const { summary, all } = await resolve(fixture.groups.B);
    expect(all.sort()).toEqual(["bob@example.org", "carol@example.org", "frank@example.org", "grace@example.org", "team@example.org"]);
    expect(norm(summary.nestedGroups)).toEqual(norm([fixture.groups.C]));
  });

  it("guards against cycles and reports them (D ⊃ E ⊃ D, and a group that is its own member)", async () => {
    const d = await resolve(fixture.groups.D);
    expect(d.all.sort()).toEqual(["dora@example.org", "eve@example.org"]);
    expect(norm(d.summary.nestedGroups)).toEqual(norm([fixture.groups.E]));
    expect(norm(d.summary.cycles)).toEqual(norm([fixture.groups.D]));

    const e = await resolve(fixture.groups.E);
    expect(e.all.sort()).toEqual(["dora@example.org", "eve@example.org"]);
    expect(norm(e.summary.cycles)).toEqual(norm([fixture.groups.E]));

    const s = await resolve(fixture.groups.S);
    expect(s.all).toEqual(["sam@example.org"]);
    expect(s.summary.nestedGroups).toEqual([]);
    expect(norm(s.summary.cycles)).toEqual(norm([fixture.groups.S]));
  });

  it("without an enabled filter, everybody is enabled", async () => {
    const { summary, all } = await resolve(fixture.groups.B, { enabledFilter: undefined });
    expect(all).toContain("dave@example.org");
    expect(summary.disabled).toBe(0);
  });

  it("accepts another spelling of the same DN (case, escapes)", async () => {
    const { summary } = await resolve(`CN=b,OU=Groups,DC=Example,DC=Org`);
    expect(summary.recipients).toBe(5);
  });

  it("a group named with *, (, ), \\ and NUL resolves to its own members only", async () => {
    expect(fixture.groups.meta).toMatch(/\*.*\(.*\).*\\5C.*\\00/);
    const { summary, all } = await resolve(fixture.groups.meta);
    expect(all).toEqual(["mia@example.org"]); // not sid (star-sibling), not anybody else
    expect(summary.nestedGroups).toEqual([]);
  });

  it("a nested group whose DN would inject (objectClass=*) into an unescaped filter never widens the search", async () => {
    const { summary, all } = await resolve(fixture.groups.injRoot);
    expect(all.sort()).toEqual(["ivan@example.org", "judy@example.org"]);
    expect(norm(summary.nestedGroups)).toEqual(norm([fixture.groups.evil]));

    // The same search with the DNs pasted in unescaped matches the whole directory: the test has teeth.
    const c = new Client({ url: slapd.url, timeout: 5000 });
    try {
      await c.bind(SERVICE_DN, SERVICE_PASSWORD);
      const unescaped = `(&(|(memberOf=${fixture.groups.injRoot})(memberOf=${fixture.groups.evil}))(!(objectClass=groupOfNames))${ENABLED_FILTER})`;
      let widened = 0;
      for await (const page of c.searchPaginated(SUFFIX, { filter: unescaped, attributes: ["1.1"], paged: { pageSize: 1000 } })) widened += page.searchEntries.length;
      expect(widened).toBeGreaterThan(fixture.everyoneCount);
    } finally {
      await c.unbind();
    }
  });

  it("a valid but hostile DN is looked up as a DN, not spliced into a filter", async () => {
    const e = await failure(directory().resolveGroup(`cn=x)(|(objectClass=*),ou=groups,${SUFFIX}`, noop));
    expect(e.code).toBe("no_such_group");
    expect(e.message).toContain("cn=x)(|(objectClass=*)");
  });

  it.each([
    ["no attribute type", "not a dn"],
    ["an empty RDN", `cn=a,,${SUFFIX}`],
    ["a trailing comma", `cn=a,${SUFFIX},`],
    ["a raw NUL", `cn=a\u0000b,${SUFFIX}`],
    ["an unescaped quote", `cn=a"b,${SUFFIX}`],
    ["a bad escape", `cn=a\\zz,${SUFFIX}`],
    ["a semicolon separator", `cn=a;${SUFFIX}`],
    ["the empty DN", ""],
  ])("refuses a malformed DN (%s) with invalid_dn, before connecting", async (_label, dn) => {
    // The URL points at a closed port: the DN is refused before any connection is tried.
    const d = new LdapDirectory({ url: "ldap://127.0.0.1:1", bindDn: SERVICE_DN, bindPassword: "x", baseDn: SUFFIX });
    const e = await failure(d.resolveGroup(dn, noop));
    expect(e.code).toBe("invalid_dn");
    expect(e.group).toBe(dn);
  });

  it("an unknown group or a non-group entry: no_such_group, naming it", async () => {
    const missing = `cn=nobody,ou=groups,${SUFFIX}`;
    const e1 = await failure(directory().resolveGroup(missing, noop));
    expect(e1.code).toBe("no_such_group");
    expect(e1.message).toContain(missing);
    const e2 = await failure(directory().resolveGroup(fixture.groups.notAGroup, noop));
    expect(e2.code).toBe("no_such_group");
    expect(e2.message).toMatch(/not a group/);
  });

  it("a group with member values that no entry answers (dangling, or memberOf not maintained) is refused, not resolved to nobody", async () => {
    const e = await failure(directory().resolveGroup(fixture.groups.dangling, noop));
    expect(e.code).toBe("inconsistent");
    expect(e.message).toContain("cn=dangling");
  });

  it("a wrong bind password: bind_failed; the password file works", async () => {
    const e = await failure(directory({ bindPassword: "wrong" }).resolveGroup(fixture.groups.A, noop));
    expect(e.code).toBe("bind_failed");
    expect(e.message).toContain(fixture.groups.A);
    expect(e.message).not.toContain("wrong");

    const file = join(scratch.dir, "bind-password");
    writeFileSync(file, `${SERVICE_PASSWORD}\n`);
    const { summary } = await resolve(fixture.groups.A, { bindPassword: undefined, bindPasswordFile: file });
    expect(summary.recipients).toBe(6);
  });

  it(`streams a ${LARGE}-member group in pages (batches), memory bounded by the page size`, async () => {
    const large = fixture.groups.large!;
    const t0 = performance.now();
    const { summary, batches, all } = await resolve(large.dn, { pageSize: 500 });
    const ms = performance.now() - t0;
    console.info(`resolved ${LARGE}-member group in ${ms.toFixed(0)} ms (${batches.length} batches)`);
    expect(batches.length).toBeGreaterThan(1);
    expect(Math.max(...batches.map((b) => b.length))).toBeLessThanOrEqual(500);
    expect(summary.batches).toBe(batches.length);
    expect(summary.recipients).toBe(large.recipients);
    expect(all.length).toBe(large.recipients);
    expect(new Set(all).size).toBe(large.recipients);
    expect(summary.disabled).toBe(large.disabled);
    expect(summary.withoutMail.count).toBe(large.withoutMail);
    expect(summary.withoutMail.first.length).toBe(Math.min(20, large.withoutMail));
  });

  it("an error thrown by the batch callback stops the resolution and comes back as it is", async () => {
    const boom = new Error("store full");
    let calls = 0;
    const e = await directory({ pageSize: 100 })
      .resolveGroup(fixture.groups.large!.dn, () => {
        calls += 1;
        if (calls === 3) throw boom;
      })
      .then(
        () => null,
        (err: unknown) => err,
      );
    expect(e).toBe(boom);
    expect(calls).toBe(3);
    // The connection was released cleanly: the next resolution works.
    expect((await resolve(fixture.groups.D)).summary.recipients).toBe(2);
  });

  it("a directory that caps paged results (slapd's default 500) fails with limit_exceeded, not a partial audience", async () => {
    const e = await failure(directory({ bindDn: LIMITED_DN, bindPassword: LIMITED_PASSWORD }).resolveGroup(fixture.groups.large!.dn, noop));
    expect(e.code).toBe("limit_exceeded");
    expect(e.message).toContain("cn=large");
  });

  it("StartTLS and ldaps:// with the CA; StartTLS with an untrusted certificate is refused", async () => {
    const ca = slapd.caPem!;
    expect((await resolve(fixture.groups.A, { startTls: true, tls: { ca } })).summary.recipients).toBe(6);
    expect((await resolve(fixture.groups.A, { url: slapd.ldapsUrl!, tls: { ca } })).summary.recipients).toBe(6);
    const e = await failure(directory({ startTls: true }).resolveGroup(fixture.groups.A, noop));
    expect(e.code).toBe("unavailable");
    expect(e.message).toMatch(/StartTLS/);
  });

  it("a hung directory: unavailable within the timeout, naming the group", async () => {
    slapd.pause();
    try {
      const t0 = Date.now();
      const e = await failure(directory({ timeoutMs: 800 }).resolveGroup(fixture.groups.A, noop));
      expect(e.code).toBe("unavailable");
      expect(e.message).toContain(fixture.groups.A);
      expect(Date.now() - t0).toBeLessThan(3000);
    } finally {
      slapd.resume();
    }
  });

  it("a stopped directory: unavailable, naming the group", async () => {
    await slapd.stop();
    const t0 = Date.now();
    const e = await failure(directory().resolveGroup(fixture.groups.A, noop));
    expect(e.code).toBe("unavailable");
    expect(e.message).toContain(fixture.groups.A);
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
