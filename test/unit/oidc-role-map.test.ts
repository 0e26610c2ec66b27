import { describe, expect, it } from "vitest";
import { personFrom, groupsIn } from "../../src/auth/oidc-claims.js";
import { DEFAULT_ROLE_MAP, parseRoleMap, rolesFor } from "../../src/auth/role-map.js";
import { ConfigError, loadConfig } from "../../src/config.js";

const mapOf = (raw: string) => {
  const r = parseRoleMap(raw);
  if (!r.ok) throw new Error(r.reason);
  return r.map;
};

describe("OIDC_ROLE_MAP", () => {
  it("parses the default, and a group named twice gets both roles", () => {
    expect([...mapOf(DEFAULT_ROLE_MAP)]).toEqual([
      ["comms-staff", ["author"]],
      ["comms-approvers", ["approver"]],
      ["it-oncall", ["ops"]],
      ["airlock-admins", ["admin"]],
    ]);
    expect(mapOf(" leads = author , leads=approver,leads=author ").get("leads")).toEqual(["author", "approver"]);
  });

  it("takes JSON for group names with commas or equals signs (DNs)", () => {
    const m = mapOf('{"cn=Comms,ou=Groups,dc=corp": ["author", "approver"], "ops": "ops"}');
    expect(m.get("cn=Comms,ou=Groups,dc=corp")).toEqual(["author", "approver"]);
    expect(m.get("ops")).toEqual(["ops"]);
  });

  it("names what is wrong", () => {
    expect(parseRoleMap("staff=writer")).toMatchObject({ ok: false, reason: expect.stringContaining('"writer" is not a role') });
    expect(parseRoleMap("staff")).toMatchObject({ ok: false, reason: expect.stringContaining("is not group=role") });
    expect(parseRoleMap("=author")).toMatchObject({ ok: false });
    expect(parseRoleMap(" , ")).toMatchObject({ ok: false, reason: "maps no group to a role" });
    expect(parseRoleMap('{"a": "root"}')).toMatchObject({ ok: false });
    expect(parseRoleMap("{not json")).toMatchObject({ ok: false, reason: expect.stringContaining("not valid JSON") });
  });

  it("gives the roles of every mapped group, in role order, exact names only", () => {
    const m = mapOf(DEFAULT_ROLE_MAP);
    expect(rolesFor(m, ["airlock-admins", "comms-staff", "finance"])).toEqual(["author", "admin"]);
    expect(rolesFor(m, ["Comms-Staff", "comms-staff "])).toEqual([]);
  });

  it("is checked at start with the OIDC settings, each problem named", () => {
    const bad = () => loadConfig({ OIDC_ISSUER: "https://idp.corp.example", OIDC_ROLE_MAP: "staff=writer", OIDC_RECHECK_SECONDS: "7200" });
    expect(bad).toThrow(ConfigError);
    expect(bad).toThrow(/OIDC_ROLE_MAP[\s\S]*OIDC_RECHECK_SECONDS/);
    expect(() => loadConfig({ OIDC_ISSUER: "https://idp.corp.example" })).toThrow(/OIDC_CLIENT_ID: required[\s\S]*OIDC_CLIENT_SECRET: required/);
    expect(() => loadConfig({ OIDC_CLIENT_ID: "x" })).toThrow(/OIDC_CLIENT_ID: needs OIDC_ISSUER/);
    expect(() => loadConfig({ DASHBOARD_TOKEN_SIGNIN: "admins" })).toThrow(/DASHBOARD_TOKEN_SIGNIN/);
    expect(() => loadConfig({ OIDC_ISSUER: "https://idp.corp.example", OIDC_CLIENT_ID: "a", OIDC_CLIENT_SECRET_FILE: "/nonexistent/secret" })).toThrow(/OIDC_CLIENT_SECRET_FILE: cannot read/);
    const c = loadConfig({ OIDC_ISSUER: "https://idp.corp.example/realms/corp", OIDC_CLIENT_ID: "airlock", OIDC_CLIENT_SECRET: "s", PUBLIC_URL: "https://airlock.corp.example" });
    expect(c.oidc).toMatchObject({ redirectUrl: "https://airlock.corp.example/auth/callback", providerName: "idp.corp.example", groupsClaim: "groups", unmapped: "refuse", recheckMs: 3_600_000 });
    expect(loadConfig({}).oidc).toBeNull();
  });
});

describe("claims → person", () => {
  const rules = { groupsClaim: "groups", emailVerifiedClaim: "email_verified", roleMap: mapOf(DEFAULT_ROLE_MAP), unmapped: "refuse" as const };
  const base = { iss: "https://idp", sub: "s1", email: "Kim@Corp.example", email_verified: true, name: "Kim", groups: ["comms-approvers"] };

  it("lower-cases the address and maps the groups", () => {
    expect(personFrom(base, rules)).toMatchObject({ ok: true, person: { email: "kim@corp.example", roles: ["approver"], issuer: "https://idp", subject: "s1", mappedGroups: ["comms-approvers"] } });
  });

  it("refuses no email, an unverified one, the groups overage, and no mapped group; or grants OIDC_UNMAPPED's role", () => {
    expect(personFrom({ ...base, email: undefined }, rules)).toMatchObject({ ok: false, refusal: { reason: "no_email" } });
    expect(personFrom({ ...base, email_verified: false }, rules)).toMatchObject({ ok: false, refusal: { reason: "email_unverified" } });
    expect(personFrom({ ...base, email_verified: undefined }, rules)).toMatchObject({ ok: false, refusal: { reason: "email_unverified" } });
    expect(personFrom({ ...base, groups: undefined, _claim_names: { groups: "src1" }, _claim_sources: { src1: { endpoint: "https://graph" } } }, rules)).toMatchObject({ ok: false, refusal: { reason: "groups_overage" } });
    expect(personFrom({ ...base, groups: ["finance"] }, rules)).toMatchObject({ ok: false, refusal: { reason: "no_role" } });
    expect(personFrom({ ...base, groups: ["finance"] }, { ...rules, unmapped: "author" })).toMatchObject({ ok: true, person: { roles: ["author"] } });
    expect(personFrom({ ...base, xms_edov: true, email_verified: undefined }, { ...rules, emailVerifiedClaim: "xms_edov" })).toMatchObject({ ok: true });
  });

  it("reads groups at a dotted path, a single string as one group, and ignores other shapes", () => {
    expect(groupsIn({ realm_access: { roles: ["comms-staff", 3] } }, "realm_access.roles")).toEqual(["comms-staff"]);
    expect(groupsIn({ groups: "comms-staff" }, "groups")).toEqual(["comms-staff"]);
    expect(groupsIn({ groups: { a: 1 } }, "groups")).toEqual([]);
    expect(groupsIn({}, "a.b.c")).toEqual([]);
  });
});
