import fc from "fast-check";
import { EqualityFilter, FilterParser, OrFilter } from "ldapts";
import { describe, expect, it } from "vitest";
import {
  anyOfFilter,
  chunks,
  decodeUtf8Escapes,
  filterSyntaxError,
  DistinctCounter,
  DnSyntaxError,
  escapeDnValue,
  escapeFilterValue,
  FingerprintSet,
  formatDn,
  GroupLimitError,
  isAttributeName,
  normalizeDn,
  parseDn,
  walkGroups,
} from "../../src/directory/group-resolution.js";
import { DirectoryError, LdapDirectory, type LdapDirectorySettings } from "../../src/directory/ldap-directory.js";

/** Strings without lone surrogates (a DN or filter value is UTF-8 on the wire). */
const text = fc.string({ unit: "grapheme", maxLength: 40 });
const binaryish = fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 40 });

describe("parseDn (RFC 4514)", () => {
  it("parses ordinary, escaped, multi-valued and hex forms", () => {
    expect(parseDn("cn=Staff,ou=Groups,dc=corp,dc=example")).toEqual([
      [{ type: "cn", value: "Staff" }],
      [{ type: "ou", value: "Groups" }],
      [{ type: "dc", value: "corp" }],
      [{ type: "dc", value: "example" }],
    ]);
    expect(parseDn("cn=Lee\\, Ann+uid=alee,dc=x")).toEqual([
      [
        { type: "cn", value: "Lee, Ann" },
        { type: "uid", value: "alee" },
      ],
      [{ type: "dc", value: "x" }],
    ]);
    expect(parseDn("cn=Caf\\C3\\A9,dc=x")[0]![0]!.value).toBe("Café");
    expect(parseDn("cn=Café,dc=x")[0]![0]!.value).toBe("Café");
    expect(parseDn("cn=\\ lead and trail\\ ,dc=x")[0]![0]!.value).toBe(" lead and trail ");
    expect(parseDn("cn=\\#hash,dc=x")[0]![0]!.value).toBe("#hash");
    expect(parseDn("cn=a*b(c)d=e,dc=x")[0]![0]!.value).toBe("a*b(c)d=e"); // legal unescaped in a DN
    expect(parseDn("cn=nul\\00x,dc=x")[0]![0]!.value).toBe("nul\u0000x");
    expect(parseDn("2.5.4.3=x,dc=y")[0]![0]!.type).toBe("2.5.4.3");
    expect(parseDn("cn=#04024869,dc=x")[0]![0]!.value).toBe("#04024869");
    expect(parseDn("cn=,dc=x")[0]![0]!.value).toBe("");
    expect(parseDn("")).toEqual([]);
  });

  it.each([
    "not a dn",
    "cn",
    "=x",
    "cn=a,",
    ",cn=a",
    "cn=a,,dc=x",
    "cn=a, dc=x", // no spaces around separators
    "cn=a;dc=x", // RFC 1779 separator
    'cn=a"b,dc=x',
    "cn=a<b,dc=x",
    "cn=a>b,dc=x",
    "cn=a\u0000b,dc=x", // raw NUL
    "cn= a,dc=x", // unescaped leading space
    "cn=a ,dc=x", // unescaped trailing space
    "cn=a\\zz,dc=x",
    "cn=a\\",
    "cn=\\c3\\28,dc=x", // escaped bytes that are not UTF-8
    "cn=#zz,dc=x",
    "cn=#0402 x,dc=x",
    "1cn=a,dc=x",
    "01.2=a,dc=x",
    "c_n=a,dc=x",
    "cn=a+,dc=x",
    "cn=\uD800,dc=x", // lone surrogate
  ])("refuses %j", (dn) => {
    expect(() => parseDn(dn)).toThrow(DnSyntaxError);
  });

  it("escapeDnValue round-trips any value through parseDn", () => {
    fc.assert(
      fc.property(fc.oneof(text, binaryish), (v) => {
        expect(parseDn(`cn=${escapeDnValue(v)},dc=x`)[0]![0]!.value).toBe(v);
      }),
    );
  });

  it("normalizeDn: one form for equivalent spellings, different for different DNs", () => {
    expect(normalizeDn("CN=Staff,OU=Groups,DC=Corp")).toBe(normalizeDn("cn=staff,ou=groups,dc=corp"));
    expect(normalizeDn("cn=a\\,b,dc=x")).toBe(normalizeDn("cn=a\\2Cb,dc=x"));
    expect(normalizeDn("cn=a+uid=b,dc=x")).toBe(normalizeDn("uid=b+cn=a,dc=x"));
    expect(normalizeDn("cn=evil,ou=a)(objectClass\\3D*)(ou\\3Db,dc=x")).toBe(normalizeDn("cn=evil,ou=a)(objectClass=*)(ou=b,dc=x"));
    expect(normalizeDn("cn=a,dc=x")).not.toBe(normalizeDn("cn=b,dc=x"));
    expect(normalizeDn("cn=a\\,dc=x,dc=y")).not.toBe(normalizeDn("cn=a,dc=x,dc=y"));
    expect(formatDn(parseDn("cn=a\\2Cb,dc=x"))).toBe("cn=a\\,b,dc=x");
  });
});

describe("filter values (RFC 4515)", () => {
  it("escapes the five special characters and leaves the rest", () => {
    expect(escapeFilterValue("a*b(c)d\\e\u0000f")).toBe("a\\2ab\\28c\\29d\\5ce\\00f");
    expect(escapeFilterValue("Café ü =,+")).toBe("Café ü =,+");
  });

  it("any value survives ldapts' filter parser as one equality value (no injection, no widening)", () => {
    fc.assert(
      fc.property(fc.oneof(text, binaryish), (v) => {
        const f = FilterParser.parseString(`(&${anyOfFilter("memberOf", [v])}(objectClass=person))`);
        const term = (f as unknown as { filters: unknown[] }).filters[0];
        expect(term).toBeInstanceOf(EqualityFilter);
        expect((term as EqualityFilter).value).toBe(v);
      }),
    );
  });

  it("an injection attempt in one of several groups stays one OR term", () => {
    const evil = "cn=evil,ou=a)(objectClass=*)(ou=b,dc=x";
    const f = FilterParser.parseString(anyOfFilter("memberOf", ["cn=root,dc=x", evil]));
    expect(f).toBeInstanceOf(OrFilter);
    const terms = (f as OrFilter).filters as EqualityFilter[];
    expect(terms.map((t) => [t.constructor, t.attribute, t.value])).toEqual([
      [EqualityFilter, "memberOf", "cn=root,dc=x"],
      [EqualityFilter, "memberOf", evil],
    ]);
  });

  it("refuses attribute names that are not names or OIDs", () => {
    expect(isAttributeName("mail")).toBe(true);
    expect(isAttributeName("userPrincipalName")).toBe(true);
    for (const bad of ["", "mail)(objectClass=*", "mail=", "ma il", "mail;binary", "-mail", "1.2.840.113556.1.2.102"]) expect(isAttributeName(bad)).toBe(false);
    expect(() => anyOfFilter("mail)(x", ["a"])).toThrow();
  });

  it("decodeUtf8Escapes: ldapts reads \\c3\\a9 as two characters; decoded first, the filter means é", () => {
    expect((FilterParser.parseString("(cn=\\c3\\a9)") as EqualityFilter).value).not.toBe("é"); // the ldapts quirk
    expect((FilterParser.parseString(decodeUtf8Escapes("(cn=\\c3\\a9)")) as EqualityFilter).value).toBe("é");
    expect(decodeUtf8Escapes("(!(cn=a\\2ab\\28))")).toBe("(!(cn=a\\2ab\\28))"); // ASCII escapes untouched
    expect(decodeUtf8Escapes("(cn=\\ff)")).toBe("(cn=\\ff)"); // not UTF-8: left as written
  });
});

describe("filterSyntaxError (RFC 4515, for settings filters)", () => {
  it.each([
    "(!(employeeType=disabled))",
    "(!(pwdAccountLockedTime=*))",
    "(!(userAccountControl:1.2.840.113556.1.4.803:=2))",
    "(&(objectClass=person)(|(cn=a*b*c)(sn~=x)(age>=3)(age<=9)))",
    "(cn:dn:2.5.13.5:=x)",
    "(:caseExactMatch:=x)",
    "(cn=a\\2ab\\28\\29\\5c\\00)",
    "(mail;binary=x)",
    "(2.5.4.3=x)",
  ])("accepts %s", (f) => {
    expect(filterSyntaxError(f)).toBeNull();
  });

  it.each([
    "(&(a=b)", // ldapts accepts this one
    "(a=b))",
    "a=b",
    "(&)",
    "(!a=b)",
    "(a=(b))",
    "(a=\\zz)",
    "(a~=b*)",
    "(=b)",
    "(a b=c)",
    "(:=x)",
    "(a:=)x",
    "(a=b)(c=d)",
  ])("refuses %s", (f) => {
    expect(filterSyntaxError(f)).toMatch(/position \d+/);
  });
});

describe("FingerprintSet", () => {
  it("counts distinct strings exactly on 200,000 members and stays compact", () => {
    const set = new FingerprintSet(16);
    let added = 0;
    let again = 0;
    for (let i = 0; i < 200_000; i++) if (set.add(`user${i}@example.org`)) added += 1;
    for (let i = 0; i < 200_000; i += 997) if (set.add(`user${i}@example.org`)) again += 1;
    expect(added).toBe(200_000);
    expect(again).toBe(0);
    expect(set.size).toBe(200_000);
    expect(set.bytes).toBeLessThanOrEqual(200_000 * 32);
  });

  it("is an exact set on random samples", () => {
    fc.assert(
      fc.property(fc.array(fc.string({ maxLength: 6 }), { maxLength: 300 }), (items) => {
        const set = new FingerprintSet(4);
        const ref = new Set<string>();
        for (const s of items) expect(set.add(s)).toBe(!ref.has(s) && !!ref.add(s));
        expect(set.size).toBe(ref.size);
      }),
    );
  });

  it("DistinctCounter counts each key once only when asked to", () => {
    const d = new DistinctCounter(true);
    d.add("a");
    d.add("a");
    d.add("b");
    expect(d.count).toBe(2);
    const n = new DistinctCounter(false);
    n.add("");
    n.add("");
    expect(n.count).toBe(2);
  });
});

describe("walkGroups", () => {
  const graph = (edges: Record<string, string[]>) => async (dn: string) => edges[dn.toLowerCase()] ?? [];
  const key = (dn: string) => dn.toLowerCase();

  it("walks nesting depth first, root first", async () => {
    const w = await walkGroups("A", graph({ a: ["B"], b: ["C"], c: [] }), { key });
    expect(w).toEqual({ groups: ["A", "B", "C"], cycles: [] });
  });

  it("reports a cycle once and walks each group once", async () => {
    const calls: string[] = [];
    const w = await walkGroups(
      "D",
      async (dn) => {
        calls.push(dn);
        return ({ D: ["E"], E: ["D", "F"], F: ["E"] } as Record<string, string[]>)[dn] ?? [];
      },
      { key },
    );
    expect(w.groups).toEqual(["D", "E", "F"]);
    expect(w.cycles).toEqual(["D", "E"]);
    expect(calls).toEqual(["D", "E", "F"]);
  });

  it("a self-member is a cycle; a diamond (two paths to one group) is not", async () => {
    expect(await walkGroups("S", graph({ s: ["S"] }), { key })).toEqual({ groups: ["S"], cycles: ["S"] });
    const d = await walkGroups("A", graph({ a: ["B", "C"], b: ["D"], c: ["D"], d: [] }), { key });
    expect(d).toEqual({ groups: ["A", "B", "D", "C"], cycles: [] });
  });

  it("identifies groups by normalised DN", async () => {
    const w = await walkGroups("cn=D,dc=x", async (dn) => (normalizeDn(dn) === "cn=d,dc=x" ? ["CN=E,DC=X"] : ["cn=d,DC=x"]));
    expect(w.groups).toEqual(["cn=D,dc=x", "CN=E,DC=X"]);
    expect(w.cycles).toEqual(["cn=d,DC=x"]);
  });

  it("stops beyond maxGroups", async () => {
    const chain = async (dn: string) => [`g${Number(dn.slice(1)) + 1}`];
    await expect(walkGroups("g0", chain, { key, maxGroups: 50 })).rejects.toBeInstanceOf(GroupLimitError);
  });

  it("chunks", () => {
    expect(chunks([1, 2, 3, 4, 5], 2)).toEqual([[1, 2], [3, 4], [5]]);
    expect(chunks([], 2)).toEqual([]);
  });
});

describe("LdapDirectory settings", () => {
  const ok: LdapDirectorySettings = { url: "ldap://127.0.0.1:389", bindDn: "cn=svc,dc=x", bindPassword: "pw", baseDn: "dc=x" };
  it("accepts good settings, without connecting", () => {
    expect(() => new LdapDirectory(ok)).not.toThrow();
    expect(() => new LdapDirectory({ ...ok, enabledFilter: "(!(userAccountControl:1.2.840.113556.1.4.803:=2))" })).not.toThrow();
    expect(() => new LdapDirectory({ ...ok, url: "ldaps://ldap.corp.example", tls: { ca: "PEM" } })).not.toThrow();
    expect(() => new LdapDirectory({ ...ok, bindPassword: undefined, bindPasswordFile: "/run/secrets/ldap" })).not.toThrow();
  });

  it.each<[string, Partial<LdapDirectorySettings>]>([
    ["a non-LDAP URL", { url: "http://ldap" }],
    ["a URL with a path", { url: "ldap://ldap/dc=x" }],
    ["StartTLS on ldaps", { url: "ldaps://ldap", startTls: true }],
    ["a malformed bind DN", { bindDn: "svc" }],
    ["a malformed base DN", { baseDn: "dc=x," }],
    ["an empty password (unauthenticated bind)", { bindPassword: "" }],
    ["both password and file", { bindPasswordFile: "/x" }],
    ["neither password nor file", { bindPassword: undefined }],
    ["an attribute name with filter syntax", { mailAttribute: "mail)(objectClass=*" }],
    ["a malformed enabled filter", { enabledFilter: "(&(a=b)" }],
    ["a page size of 0", { pageSize: 0 }],
    ["a tiny timeout", { timeoutMs: 5 }],
  ])("refuses %s with invalid_settings", (_label, over) => {
    let err: unknown;
    try {
      new LdapDirectory({ ...ok, ...over });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DirectoryError);
    expect((err as DirectoryError).code).toBe("invalid_settings");
  });
});
