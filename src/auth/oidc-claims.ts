/**
 * From the verified claims of an ID token (or userinfo) to a person Airlock knows, or the reason it
 * refuses them. Pure: the pages' wording of each refusal is here too, so a test can read it.
 *
 * The identity is issuer + subject; the email is what the domain keys people by (message authors,
 * approvals, notifications), so it must be present and verified (auth/oidc-people.ts binds one
 * verified address to one subject).
 */
import { z } from "zod";
import { rolesFor, mappedGroups, type RoleMap } from "./role-map.js";
import type { Role } from "./users.js";

export interface OidcPerson {
  issuer: string;
  subject: string;
  email: string;
  name: string;
  roles: Role[];
  /** The person's groups that gave a role (for the audit entry). */
  mappedGroups: string[];
}

export type ClaimRefusalReason = "no_email" | "email_unverified" | "groups_overage" | "no_role";

export interface ClaimRefusal {
  reason: ClaimRefusalReason;
  heading: string;
  detail: string;
}

export interface ClaimRules {
  groupsClaim: string;
  emailVerifiedClaim: string;
  roleMap: RoleMap;
  unmapped: "refuse" | Role;
}

const email = z.email().max(254);

export function personFrom(claims: Record<string, unknown>, rules: ClaimRules): { ok: true; person: OidcPerson } | { ok: false; refusal: ClaimRefusal } {
  const refuse = (reason: ClaimRefusalReason, heading: string, detail: string) => ({ ok: false as const, refusal: { reason, heading, detail } });
  const address = typeof claims.email === "string" ? email.safeParse(claims.email.trim()) : null;
  if (!address?.success) {
    return refuse("no_email", "Your account has no email address for Airlock", "The sign-in provider sent no usable email address for your account. Ask your administrators to release the email claim to Airlock.");
  }
  const verified = claims[rules.emailVerifiedClaim];
  if (verified !== true && verified !== "true") {
    return refuse("email_unverified", "Your email address is not verified", `The sign-in provider does not say that ${address.data} is verified, and Airlock identifies people by their verified address. Verify it at your provider, or ask your administrators.`);
  }
  if (overage(claims, rules.groupsClaim)) {
    return refuse(
      "groups_overage",
      "Too many groups to sign in",
      "Your account is in more groups than the sign-in provider puts in a token, so Airlock cannot see which of its groups you are in. Ask your administrators to send only the groups assigned to Airlock (Entra ID: “Groups assigned to the application”).",
    );
  }
  const groups = groupsIn(claims, rules.groupsClaim);
  let roles = rolesFor(rules.roleMap, groups);
  if (roles.length === 0) {
    if (rules.unmapped === "refuse") {
      return refuse("no_role", "You have no role in Airlock", "You signed in, but none of your groups gives a role in Airlock, so nothing was opened. If you should have access, ask your administrators to add you to the right group.");
    }
    roles = [rules.unmapped];
  }
  const lower = address.data.toLowerCase();
  return {
    ok: true,
    person: {
      issuer: String(claims.iss),
      subject: String(claims.sub),
      email: lower,
      name: displayName(claims) ?? lower,
      roles,
      mappedGroups: mappedGroups(rules.roleMap, groups),
    },
  };
}

/** The groups at a claim path (`groups`, `realm_access.roles`): a list of strings, or one string; anything else is none. */
export function groupsIn(claims: Record<string, unknown>, path: string): string[] {
  let v: unknown = claims;
  for (const part of path.split(".")) v = v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>)[part] : undefined;
  if (typeof v === "string") return [v];
  if (!Array.isArray(v)) return [];
  return v.filter((g): g is string => typeof g === "string");
}

/**
 * The groups claim replaced by a pointer (OpenID Connect "distributed claims"): Entra ID does this
 * for a person in more than 200 groups (`_claim_names: {groups: "src1"}`), and leaves `groups` out.
 */
function overage(claims: Record<string, unknown>, path: string): boolean {
  const names = claims._claim_names;
  const top = path.split(".")[0]!;
  return names !== null && typeof names === "object" && Object.prototype.hasOwnProperty.call(names, top) && claims[top] === undefined;
}

function displayName(claims: Record<string, unknown>): string | null {
  const clean = (v: unknown) => (typeof v === "string" ? v.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, "").trim().slice(0, 200) : "");
  const name = clean(claims.name) || [clean(claims.given_name), clean(claims.family_name)].filter(Boolean).join(" ");
  return name || null;
}
