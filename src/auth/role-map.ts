/**
 * The group → role map of OpenID Connect sign-in (OIDC_ROLE_MAP), and what a person's groups give.
 *
 * Written `group=role,group=role`; a group named twice gets both roles
 * (`airlock-admins=ops,airlock-admins=admin`). Group names whose text holds `,` or `=` (LDAP DNs as
 * some providers send them) are written as JSON instead: `{"cn=Comms,ou=Groups,dc=corp": ["author"]}`.
 * Group names are compared exactly (case and all): providers send them exactly as configured, and
 * `Comms-Staff` being a different group from `comms-staff` is the provider's business, not ours.
 */
import { z } from "zod";
import { ROLES, type Role } from "./users.js";

export type RoleMap = ReadonlyMap<string, readonly Role[]>;

export const DEFAULT_ROLE_MAP = "comms-staff=author,comms-approvers=approver,it-oncall=ops,airlock-admins=admin";

const MAX_GROUP_LENGTH = 512;
const jsonForm = z.record(z.string().min(1).max(MAX_GROUP_LENGTH), z.union([z.enum(ROLES), z.array(z.enum(ROLES)).min(1)]));

/** Parses the map; `{ok: false, reason}` names the first entry that is wrong. */
export function parseRoleMap(raw: string): { ok: true; map: RoleMap } | { ok: false; reason: string } {
  const text = raw.trim();
  const out = new Map<string, Role[]>();
  const add = (group: string, role: Role) => {
    const roles = out.get(group) ?? [];
    if (!roles.includes(role)) roles.push(role);
    out.set(group, roles);
  };
  if (text.startsWith("{")) {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      return { ok: false, reason: `is not valid JSON: ${(e as Error).message}` };
    }
    const parsed = jsonForm.safeParse(json);
    if (!parsed.success) return { ok: false, reason: `must map group names to a role or a list of roles (${ROLES.join(", ")}): ${z.prettifyError(parsed.error).replace(/\n/g, " ")}` };
    for (const [group, roles] of Object.entries(parsed.data)) for (const r of Array.isArray(roles) ? roles : [roles]) add(group, r);
  } else {
    for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
      const eq = part.lastIndexOf("=");
      const group = part.slice(0, eq).trim();
      const role = part.slice(eq + 1).trim();
      if (eq <= 0 || !group) return { ok: false, reason: `"${part}" is not group=role` };
      if (group.length > MAX_GROUP_LENGTH) return { ok: false, reason: `a group name is longer than ${MAX_GROUP_LENGTH} characters` };
      if (!(ROLES as readonly string[]).includes(role)) return { ok: false, reason: `"${part}": "${role}" is not a role (${ROLES.join(", ")})` };
      add(group, role as Role);
    }
  }
  if (out.size === 0) return { ok: false, reason: "maps no group to a role" };
  return { ok: true, map: out };
}

/** The roles a person's groups give, in the order of ROLES (no duplicates); [] when none maps. */
export function rolesFor(map: RoleMap, groups: readonly string[]): Role[] {
  const got = new Set<Role>();
  for (const g of groups) for (const r of map.get(g) ?? []) got.add(r);
  return ROLES.filter((r) => got.has(r));
}

/** The groups that gave a role (for the audit entry of a sign-in). */
export const mappedGroups = (map: RoleMap, groups: readonly string[]): string[] => groups.filter((g) => map.has(g));
