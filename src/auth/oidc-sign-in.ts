/**
 * Signing in with OpenID Connect, and the re-check of those sessions: the flow's transaction
 * (single use, bound to the browser that started it), the claims → person rules, the email binding,
 * the registry of people, the audit entries. The routes (http/dashboard/oidc-routes.ts) only carry
 * cookies and pages.
 *
 * Audited: every sign-in (`signIn`, method oidc, issuer, subject, roles, the groups that gave them),
 * every refusal of a person the provider vouched for (`signInRefused`: unverified email, no role,
 * too many groups, an address bound to another subject), and every session a re-check ended
 * (`sessionEnded`). A callback that does not verify (tampered, replayed, wrong state or nonce,
 * expired ID token) names nobody trustworthy: it is logged, not audited.
 */
import { createHash, randomBytes } from "node:crypto";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { AuditLog } from "../audit/audit-log.js";
import type { OidcSettings } from "../config.js";
import type { OidcSessionCheck, OidcSessionPerson } from "../http/dashboard/sessions.js";
import { keys } from "../store/keys.js";
import { personFrom, groupsIn, type ClaimRules, type OidcPerson } from "./oidc-claims.js";
import { OidcFailure, type OidcClient } from "./oidc-client.js";
import { oidcCredential, type OidcPeople } from "./oidc-people.js";
import { parseRoleMap } from "./role-map.js";

/** A person has this long at the provider between leaving for it and coming back. */
export const TRANSACTION_TTL_SECONDS = 600;

export interface SignInRefusal {
  status: 400 | 403 | 503;
  heading: string;
  detail: string;
}

const hash = (s: string) => createHash("sha256").update(s).digest("hex");

export class OidcSignIn implements OidcSessionCheck {
  private readonly rules: ClaimRules;

  constructor(
    private readonly d: { client: OidcClient; people: OidcPeople; redis: Redis; audit: AuditLog; settings: OidcSettings; logger: Logger },
  ) {
    const map = parseRoleMap(d.settings.roleMap);
    if (!map.ok) throw new Error(`OIDC_ROLE_MAP: ${map.reason}`); // config.ts checked it already
    this.rules = { groupsClaim: d.settings.groupsClaim, emailVerifiedClaim: d.settings.emailVerifiedClaim, roleMap: map.map, unmapped: d.settings.unmapped };
  }

  get providerName(): string {
    return this.d.settings.providerName;
  }

  get recheckMs(): number {
    return this.d.settings.recheckMs;
  }

  /** Starts a sign-in: where to send the browser, and the transaction id for its cookie. */
  async begin(next: string): Promise<{ ok: true; transaction: string; url: URL } | { ok: false; refusal: SignInRefusal }> {
    let req;
    try {
      req = await this.d.client.authorizationRequest();
    } catch (e) {
      const f = e as OidcFailure;
      this.d.logger.warn({ code: f.code }, `OpenID Connect sign-in not started: ${f.message}`);
      return { ok: false, refusal: refusalFor(f) };
    }
    const transaction = randomBytes(32).toString("base64url");
    const key = keys.oidcTransaction(hash(transaction));
    await this.d.redis.multi().hset(key, { state: req.state, nonce: req.nonce, codeVerifier: req.codeVerifier, next }).expire(key, TRANSACTION_TTL_SECONDS).exec();
    return { ok: true, transaction, url: req.url };
  }

  /**
   * Finishes a sign-in from the callback's query string and the transaction its cookie names. The
   * transaction is taken (read and deleted) first, so a callback works once.
   */
  async complete(transaction: string | undefined, query: string, from: { ip?: string }): Promise<{ ok: true; person: OidcSessionPerson; refreshToken: string | null; next: string } | { ok: false; refusal: SignInRefusal }> {
    const tx = transaction && /^[A-Za-z0-9_-]{43}$/.test(transaction) ? await this.take(transaction) : null;
    if (!tx) {
      this.d.logger.warn({ ip: from.ip }, "OpenID Connect callback refused: no sign-in under way in this browser (expired, already used, or started elsewhere)");
      return {
        ok: false,
        refusal: { status: 400, heading: "This sign-in has expired or was already used", detail: "Nothing was signed in. Start again from the sign-in page; a sign-in must be finished within 10 minutes, in the browser that started it." },
      };
    }
    let claims: Record<string, unknown>;
    let refreshToken: string | null;
    try {
      const grant = await this.d.client.completeAuthorization(query, tx);
      claims = await this.withUserinfo(grant.claims, grant.accessToken);
      refreshToken = grant.refreshToken;
    } catch (e) {
      const f = e instanceof OidcFailure ? e : new OidcFailure("invalid_response", (e as Error).message, "unexpected");
      this.d.logger.warn({ ip: from.ip, code: f.code, kind: f.kind }, `OpenID Connect callback refused: ${f.message}`);
      return { ok: false, refusal: refusalFor(f) };
    }
    const judged = await this.judge(claims, "signIn", from);
    if (!judged.ok) return judged;
    await this.d.audit.append(judged.person.email, "signIn", {
      method: "oidc",
      issuer: judged.person.issuer,
      subject: judged.person.subject,
      roles: judged.person.roles,
      groups: judged.person.mappedGroups,
      ip: from.ip ?? null,
    });
    this.d.logger.info({ user: judged.person.email, roles: judged.person.roles }, "OpenID Connect sign-in");
    return { ok: true, person: sessionPerson(judged.person), refreshToken, next: tx.next };
  }

  /** The re-check (SessionStore calls it when a session's check is due): null ends the session. */
  async recheck(p: OidcSessionPerson, refreshToken: string | null): Promise<{ person: OidcSessionPerson; refreshToken: string | null } | null> {
    const end = async (reason: string, detail: Record<string, unknown> = {}, forget = true) => {
      // A refusal or lost groups: the registry forgets them (no more approval requests). A provider
      // that cannot be asked, or a session without a refresh token, says nothing about the person.
      if (forget) await this.d.people.remove(p.email);
      await this.d.audit.append(p.email, "sessionEnded", { method: "oidc", reason, issuer: p.issuer, subject: p.subject, ...detail });
      this.d.logger.info({ user: p.email, reason }, "OpenID Connect session ended at its re-check");
      return null;
    };
    if (!refreshToken) return end("no_refresh_token", {}, false);
    let claims: Record<string, unknown>;
    let next: string | null;
    try {
      const grant = await this.d.client.refresh(refreshToken, p.subject);
      claims = await this.withUserinfo({ iss: p.issuer, ...grant.claims }, grant.accessToken);
      next = grant.refreshToken;
    } catch (e) {
      const f = e instanceof OidcFailure ? e : new OidcFailure("invalid_response", (e as Error).message, "unexpected");
      return f.kind === "unreachable" ? end("provider_unreachable", { code: f.code }, false) : end("refresh_refused", { code: f.code });
    }
    if (claims.iss !== p.issuer || claims.sub !== p.subject) return end("identity_changed");
    const judged = await this.judge(claims, "recheck", {});
    if (!judged.ok) return end(`refused:${judged.reason}`);
    if (judged.person.email !== p.email) return end("email_changed"); // a new sign-in binds the new address
    if (judged.person.roles.join() !== p.roles.join()) this.d.logger.info({ user: p.email, from: p.roles, to: judged.person.roles }, "OpenID Connect re-check: roles changed");
    return { person: sessionPerson(judged.person), refreshToken: next };
  }

  /** The claims' person, bound and recorded; or the refusal (audited: the provider vouched for these claims). */
  private async judge(claims: Record<string, unknown>, when: "signIn" | "recheck", from: { ip?: string }): Promise<{ ok: true; person: OidcPerson } | { ok: false; refusal: SignInRefusal; reason: string }> {
    const actor = typeof claims.email === "string" && claims.email.length <= 254 ? claims.email.toLowerCase() : `oidc:${String(claims.sub).slice(0, 255)}`;
    const audit = (reason: string, detail: Record<string, unknown> = {}) =>
      when === "signIn" ? this.d.audit.append(actor, "signInRefused", { method: "oidc", reason, issuer: claims.iss, subject: claims.sub, ip: from.ip ?? null, ...detail }) : Promise.resolve();
    const r = personFrom(claims, this.rules);
    if (!r.ok) {
      await audit(r.refusal.reason);
      if (when === "signIn") this.d.logger.warn({ user: actor, reason: r.refusal.reason }, "OpenID Connect sign-in refused");
      return { ok: false, refusal: { status: 403, heading: r.refusal.heading, detail: r.refusal.detail }, reason: r.refusal.reason };
    }
    const person = r.person;
    const bound = await this.d.people.bind(person.email, person.issuer, person.subject);
    if (!bound.ok) {
      await audit("email_bound_to_another_identity", { boundTo: { issuer: bound.boundTo[0], subject: bound.boundTo[1] } });
      this.d.logger.warn({ user: person.email, subject: person.subject }, "OpenID Connect sign-in refused: address bound to another identity");
      return {
        ok: false,
        reason: "email_bound_to_another_identity",
        refusal: {
          status: 403,
          heading: "This email address belongs to another account",
          detail: `${person.email} already signed in to Airlock with a different account at the provider, and one address is one person here. Nothing was signed in. If the account was replaced, ask an Airlock administrator to release the address.`,
        },
      };
    }
    await this.d.people.record({ email: person.email, name: person.name, roles: person.roles, issuer: person.issuer, subject: person.subject });
    return { ok: true, person };
  }

  /** Some providers put groups (or the email) only in userinfo: asked when the ID token lacks them. */
  private async withUserinfo(claims: Record<string, unknown>, accessToken: string): Promise<Record<string, unknown>> {
    const hasGroups = groupsIn(claims, this.rules.groupsClaim).length > 0 || claims._claim_names !== undefined;
    if (hasGroups && typeof claims.email === "string") return claims;
    const info = await this.d.client.userinfo(accessToken, String(claims.sub));
    return { ...info, ...claims, ...(hasGroups ? {} : pick(info, this.rules.groupsClaim.split(".")[0]!)) };
  }

  private async take(transaction: string): Promise<{ state: string; nonce: string; codeVerifier: string; next: string } | null> {
    const key = keys.oidcTransaction(hash(transaction));
    const [[, h]] = (await this.d.redis.multi().hgetall(key).del(key).exec()) as [[null, Record<string, string>], [null, number]];
    if (!h.state || !h.nonce || !h.codeVerifier) return null;
    return { state: h.state, nonce: h.nonce, codeVerifier: h.codeVerifier, next: h.next ?? "/" };
  }
}

const pick = (o: Record<string, unknown>, k: string) => (o[k] === undefined ? {} : { [k]: o[k] });

function sessionPerson(p: OidcPerson): OidcSessionPerson {
  return { email: p.email, name: p.name, roles: p.roles, issuer: p.issuer, subject: p.subject, credential: oidcCredential(p.issuer, p.subject) };
}

function refusalFor(f: OidcFailure): SignInRefusal {
  switch (f.kind) {
    case "access_denied":
      return { status: 403, heading: "The sign-in provider did not let you in", detail: "The provider refused the sign-in or it was cancelled. Nothing was signed in; you can try again from the sign-in page." };
    case "provider_error":
      return { status: 400, heading: "The sign-in provider reported an error", detail: `The provider answered “${printable(f.code)}”. Nothing was signed in; try again from the sign-in page, and tell your administrators if it persists.` };
    case "unreachable":
      return { status: 503, heading: "The sign-in provider cannot be reached", detail: "Airlock could not reach the sign-in provider. Nothing was signed in; try again in a moment." };
    default:
      return { status: 400, heading: "This sign-in could not be verified", detail: "What came back from the sign-in provider did not match the sign-in this browser started, or could not be verified. Nothing was signed in; start again from the sign-in page." };
  }
}

const printable = (s: string) => s.replace(/[^\x20-\x7e]/g, "").slice(0, 80);
