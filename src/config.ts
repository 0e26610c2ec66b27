/**
 * Configuration: one zod schema, parsed once at start, frozen.
 * A bad or missing variable is reported by name; secrets have no default outside development.
 */
import { readFileSync } from "node:fs";
import { z } from "zod";
import { DEFAULT_ROLE_MAP, parseRoleMap } from "./auth/role-map.js";
import { ROLES, type Role } from "./auth/users.js";
import { parseDomainList } from "./domain/recipient-domains.js";
import { parseMailbox } from "./domain/sender.js";
import { parsePurgeSettings, type PurgeSettings } from "./purge/purge-settings.js";
import { checkDirectoryConfig } from "./directory/settings.js";

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

const schema = z.object({
  NODE_ENV: z.enum(["development", "production", "test"]).default("development"),
  /** HTTP port. Default 3000. */
  PORT: int(0, 65535).default(3000),
  /** Base of links in emails, e.g. https://airlock.corp.example. Default http://localhost:$PORT. */
  PUBLIC_URL: z.url().optional(),
  /** Redis to use. Unset in development: a local redis-server is spawned with its data under ./data. */
  REDIS_URL: z.url({ protocol: /^rediss?$/ }).optional(),
  /** SMTP server (smtp://user:pass@host:port). Unset in development: mail is written to ./data/outbox. */
  SMTP_URL: z.url({ protocol: /^smtps?$/ }).optional(),
  /**
   * Approvals a custom correction text needs, by people other than the one who recalled, before it
   * is mailed (the fan-out stops at once regardless). 0 mails it at once. Default 1.
   */
  CORRECTION_APPROVALS: int(0, 5).default(1),
  /** Default sender of every message. */
  MAIL_FROM: z
    .string()
    .default("Internal Communications <comms@corp.example>")
    .refine((s) => parseMailbox(s).ok, { error: (i) => `must be one mailbox such as "Internal Communications <comms@corp.example>": ${(parseMailbox(String(i.input)) as { reason?: string }).reason ?? ""}` }),
  /**
   * The company as the house templates of a Markdown body name it (templates/messages/). Part of
   * every such mail's bytes: changing it changes the digest of messages approved but not yet sent,
   * which then halt at release. Default "Corp".
   */
  COMPANY_NAME: z.string().trim().min(1).max(100).regex(/^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$/, { error: "must be one line of text" }).default("Corp"),
  /** Logo in the house templates' header, an https URL (mail clients block others). Default unset: the name alone. */
  COMPANY_LOGO_URL: z.url({ protocol: /^https$/, error: "must be an https URL" }).optional(),
  /** The footer line of every house template. Default "Internal communication — please do not forward outside the company." */
  COMPANY_FOOTER: z
    .string()
    .trim()
    .min(1)
    .max(500)
    .regex(/^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$/, { error: "must be one line of text" })
    .default("Internal communication — please do not forward outside the company."),
  /** JSON file of users and their token hashes. Unset in development: demo users are seeded. */
  USERS_FILE: z.string().min(1).optional(),
  /** Secret that signs approver links; at least 32 characters. No default outside development. */
  LINK_SECRET: z.string().min(32, { error: "must be at least 32 characters" }).optional(),
  /** Minimum hold after approval, in seconds. Default 900 (15 minutes). */
  HOLD_MIN_SECONDS: int(0, 30 * 24 * 3600).default(900),
  /** Approvals required for an ordinary audience. Default 1. */
  APPROVALS_REQUIRED: int(1, 10).default(1),
  /** Audience size from which LARGE_AUDIENCE_APPROVALS apply. Default 1000. */
  LARGE_AUDIENCE_THRESHOLD: int(1, 100_000_000).default(1000),
  /** Approvals required for a large audience. Default 2. */
  LARGE_AUDIENCE_APPROVALS: int(1, 10).default(2),
  /**
   * Staged sends (SPEC "Staged sends"): a message of at least this many recipients goes out in waves
   * (seed cohort, canary, a wait, the rest). Unset: LARGE_AUDIENCE_THRESHOLD. 0: no message is staged
   * unless its author asks (`waves: true`). A message may opt out with `waves: false` (admins only).
   */
  WAVES_THRESHOLD: int(0, 100_000_000).optional(),
  /** Share of the audience in the canary wave, percent. Default 1. */
  CANARY_PERCENT: z.coerce.number().gt(0).max(100).default(1),
  /** The smallest canary (when the audience has that many beyond the seed cohort). Default 50. */
  CANARY_MIN_RECIPIENTS: int(1, 1_000_000).default(50),
  /** Minutes between the end of the canary and the start of the rest, while signals are watched. Default 10; decimals allowed (tests, demos). */
  CANARY_WAIT_MINUTES: z.coerce.number().min(0).max(7 * 24 * 60).default(10),
  /** Human replies to an early wave that halt the send. Default 3. */
  SIGNAL_REPLIES: int(1, 1_000_000).default(3),
  /** "Report a problem" clicks that halt the send. Default 1. */
  SIGNAL_REPORTS: int(1, 1_000_000).default(1),
  /** Bounces over this percentage of the early waves' recipients (seed cohort and canary) halt the send. Default 2. */
  SIGNAL_BOUNCE_PERCENT: z.coerce.number().min(0).max(100).default(2),
  /** Permanent SMTP failures over this percentage of the early waves' recipients (seed cohort and canary) halt the send. Default 2. */
  SIGNAL_FAILURE_PERCENT: z.coerce.number().min(0).max(100).default(2),
  /**
   * The domain Airlock's inbound SMTP listener receives bounces and replies for (its MX points at
   * Airlock): early waves go with a VERP return path and a Reply-To at it. Unset: no listener, no
   * VERP, no Reply-To; failures and reports are still watched.
   */
  RETURN_PATH_DOMAIN: z
    .string()
    .trim()
    .toLowerCase()
    .regex(/^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$/, { error: "must be a domain name (bounces.corp.example)" })
    .optional(),
  /** Port of the inbound SMTP listener (with RETURN_PATH_DOMAIN). Default 2525; 0 picks a free one. */
  INBOUND_SMTP_PORT: int(0, 65535).default(2525),
  /** Address the inbound listener binds. Default all interfaces. */
  INBOUND_SMTP_HOST: z.string().min(1).optional(),
  /** Hours an approval request stays open before the message expires. Default 72. */
  APPROVAL_TTL_HOURS: z.coerce.number().positive().max(24 * 365).default(72),
  /** Recipients handed to SMTP per second, across all workers. Default 500. */
  SEND_RATE_PER_SECOND: int(1, 10_000_000).default(500),
  /**
   * Name given to the SMTP server with EHLO: this host's fully qualified name as the relay knows it
   * (e.g. airlock-1.corp.example) or an address literal ([10.0.0.5]). Unset: the host name when it
   * is fully qualified, else the address literal of the connection.
   */
  SMTP_EHLO_NAME: z
    .string()
    .regex(/^(?:(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+|\[[0-9A-Fa-f:.]+\]|\[IPv6:[0-9A-Fa-f:.]+\])$/, {
      error: "must be a fully qualified host name (airlock.corp.example) or an address literal ([10.0.0.5])",
    })
    .optional(),
  /**
   * Domains recipients may be in, comma-separated (`corp.example,corp-eu.example`): an address in
   * any other domain is refused at audience upload and at submit. Exact match, case-insensitive: a
   * subdomain is allowed only when listed itself (domain/recipient-domains.ts). Parsed into a
   * lower-cased list. Default unset: any domain.
   */
  ALLOWED_RECIPIENT_DOMAINS: z
    .string()
    .transform((raw, ctx) => {
      const r = parseDomainList(raw);
      if (!r.ok) {
        ctx.addIssue({ code: "custom", message: r.reason });
        return z.NEVER;
      }
      return r.domains;
    })
    .optional(),
  /** SMTP connections per worker process. Default 5. */
  SMTP_POOL_SIZE: int(1, 100).default(5),
  /**
   * While a fan-out runs, bulk work (an upload's chunks, a freeze's slices) waits this many times
   * as long as each slice took before the next: sends and recalls first. 0: never. Default 3.
   */
  BULK_PACE_RATIO: z.coerce.number().min(0).max(20).default(3),
  /** Envelope recipients per SMTP transaction. Default 50; 1 means one transaction per recipient. */
  RECIPIENTS_PER_TRANSACTION: int(1, 1000).default(50),
  /** Number of `trust proxy` hops in front of the service. Default 0. */
  TRUST_PROXY_HOPS: int(0, 10).default(0),
  /** Requests per minute per client address to /api. Default 600. */
  API_RATE_LIMIT_PER_MINUTE: int(1, 1_000_000).default(600),
  /** Requests per minute per client address to /links (a person needs two per link). Default 60. */
  LINK_RATE_LIMIT_PER_MINUTE: int(1, 1_000_000).default(60),
  /**
   * Seconds a worker's job lock lasts without renewal: a killed worker's jobs are taken over at most
   * a third of this later again (8 s at the default), and a live worker renews every sixth of it,
   * so an event-loop stall of up to five sixths of it (5 s) loses nothing (workers/run-workers.ts).
   * Default 6.
   */
  WORKER_LOCK_SECONDS: int(2, 600).default(6),
  /**
   * TLS to the SMTP server: `required` (STARTTLS must be offered and succeed, certificate verified),
   * `opportunistic` (STARTTLS when offered) or `none`. An smtps:// URL is TLS from the first byte
   * whatever this says. Default: `required` in production to a host other than loopback, else
   * `opportunistic`.
   */
  SMTP_TLS: z.enum(["required", "opportunistic", "none"]).optional(),
  /** PEM file of the CA that signed the SMTP server's certificate (a private CA), added to the system's. */
  SMTP_CA_FILE: z.string().min(1).optional(),
  /**
   * Redis Sentinels, `host:port` comma-separated: Airlock asks them for the primary of
   * REDIS_SENTINEL_NAME instead of connecting to REDIS_URL's host (REDIS_URL then gives only the
   * password, database and TLS, and may be omitted).
   */
  REDIS_SENTINELS: z
    .string()
    .transform((raw, ctx) => {
      const out: Array<{ host: string; port: number }> = [];
      for (const part of raw.split(",").map((p) => p.trim()).filter(Boolean)) {
        const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(part);
        if (!m || Number(m[2]) > 65535) {
          ctx.addIssue({ code: "custom", message: `"${part}" is not host:port` });
          return z.NEVER;
        }
        out.push({ host: m[1]!.replace(/^\[|\]$/g, ""), port: Number(m[2]) });
      }
      if (!out.length) {
        ctx.addIssue({ code: "custom", message: "names no sentinel" });
        return z.NEVER;
      }
      return out;
    })
    .optional(),
  /** The primary's name the sentinels monitor. Default "airlock". */
  REDIS_SENTINEL_NAME: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, { error: "must be a sentinel master name (letters, digits, . _ -)" }).default("airlock"),
  /**
   * Replicas that must have an approval, a recall or a halt (Redis WAIT) before it is answered with
   * success. Default 0 (answer at once; a failover may then forget the last acknowledged actions).
   */
  REDIS_MIN_REPLICAS_ACK: int(0, 10).default(0),
  /** Milliseconds to wait for REDIS_MIN_REPLICAS_ACK replicas before answering 503 (the action is kept and may be retried). Default 2000. */
  REDIS_REPLICA_ACK_TIMEOUT_MS: int(10, 60_000).default(2000),
  /**
   * Who rewrites Redis's AOF: `when-quiet` (the workers keep Redis's auto-aof-rewrite rule, raise
   * Redis's own to twice it plus one, and start the rewrite by the kept rule while no fan-out runs and Redis
   * takes few writes: infra/aof-rewrite.ts) or `redis` (Redis by its own rule, during sends too; a
   * percentage the workers raised is given back). Default `when-quiet`.
   */
  REDIS_AOF_REWRITE: z.enum(["when-quiet", "redis"]).default("when-quiet"),
  /**
   * Secret that keys the audit chain (HMAC-SHA-256); at least 32 characters. Whoever holds it can
   * verify the chain, and forge it: give it to the service and the auditor only. No default outside
   * development (a random one kept under ./data).
   */
  AUDIT_SECRET: z.string().min(32, { error: "must be at least 32 characters" }).optional(),
  /** Revisions one message may have (each edit is one). Default 50. */
  MAX_REVISIONS: int(1, 1000).default(50),
  /**
   * The directory (LDAP) that `directoryGroup` audiences are resolved from: `ldaps://host:636`, or
   * `ldap://host:389` with DIRECTORY_STARTTLS=true (plain `ldap://` without it: loopback or tests
   * only). Unset (default): no directory; defining or submitting to a directory audience is a 422.
   * With it set, DIRECTORY_BIND_DN, DIRECTORY_BASE_DN and one of DIRECTORY_BIND_PASSWORD /
   * DIRECTORY_BIND_PASSWORD_FILE are required (src/directory/settings.ts checks them at start).
   */
  DIRECTORY_URL: z.url({ protocol: /^ldaps?$/, error: "must be an ldap:// or ldaps:// URL" }).optional(),
  /** Upgrade an ldap:// connection with StartTLS before binding (certificate verified). Default false. */
  DIRECTORY_STARTTLS: z.stringbool().default(false),
  /** PEM file of the CA that signed the directory's certificate (a private CA), for ldaps:// and StartTLS. Default: the system's CAs. */
  DIRECTORY_CA_FILE: z.string().min(1).optional(),
  /** The DN Airlock binds as (read access to people and groups; no size limit on paged searches). */
  DIRECTORY_BIND_DN: z.string().min(1).optional(),
  /** The bind password (no default), or… */
  DIRECTORY_BIND_PASSWORD: z.string().min(1).optional(),
  /** …a file holding it, read at each resolution (a rotated secret is picked up; one trailing newline dropped). */
  DIRECTORY_BIND_PASSWORD_FILE: z.string().min(1).optional(),
  /** Where members are searched (subtree), e.g. `dc=corp,dc=example`. */
  DIRECTORY_BASE_DN: z.string().min(1).optional(),
  /** The attribute holding a person's address. Default `mail`. */
  DIRECTORY_MAIL_ATTRIBUTE: z.string().min(1).default("mail"),
  /** The group's member attribute. Default `member`. */
  DIRECTORY_MEMBER_ATTRIBUTE: z.string().min(1).default("member"),
  /** The attribute the directory keeps on members naming their groups. Default `memberOf` (AD, 389-DS, OpenLDAP's memberof overlay). */
  DIRECTORY_MEMBER_OF_ATTRIBUTE: z.string().min(1).default("memberOf"),
  /**
   * An LDAP filter matching the accounts to KEEP: disabled accounts are the members it does not
   * match, counted and excluded. E.g. AD `(!(userAccountControl:1.2.840.113556.1.4.803:=2))`,
   * OpenLDAP `(!(pwdAccountLockedTime=*))`. Default unset: every member counts as enabled.
   */
  DIRECTORY_ENABLED_FILTER: z.string().min(1).optional(),
  /** Per directory operation (connect, bind, each page), in milliseconds. Default 10000. */
  DIRECTORY_TIMEOUT_MS: int(100, 600_000).default(10_000),
  /**
   * A resolution whose recipients changed (added + removed) by more than this percentage of the
   * last resolution's size is refused (409) unless an admin confirms it; so is one of 0 recipients
   * (422). Default 20.
   */
  DIRECTORY_MAX_CHANGE_PERCENT: z.coerce.number().min(0).max(1000).default(20),
  /** A worker-only process (`npm run start:worker`) serves GET /metrics on this port when set. */
  METRICS_PORT: int(0, 65535).optional(),
  /**
   * OpenID Connect sign-in (auth/oidc.ts): the provider's issuer URL, exactly as its discovery
   * document names it (https://login.microsoftonline.com/<tenant>/v2.0, https://kc.corp.example/realms/corp).
   * Setting it turns the sign-in on ("Sign in with …" on the sign-in page, /auth/login, /auth/callback);
   * the other OIDC_ settings need it. Must be https in production. Default unset: token sign-in only.
   */
  OIDC_ISSUER: z.url({ protocol: /^https?$/ }).optional(),
  /** The client id Airlock is registered under at the provider. Required with OIDC_ISSUER. */
  OIDC_CLIENT_ID: z.string().min(1).max(255).optional(),
  /** The client's secret. Give this or OIDC_CLIENT_SECRET_FILE (not both). No default. */
  OIDC_CLIENT_SECRET: z.string().min(1).max(4096).optional(),
  /** A file holding the client's secret (trailing newline ignored), read once at start. */
  OIDC_CLIENT_SECRET_FILE: z.string().min(1).optional(),
  /** Where the provider sends the browser back; register exactly this at the provider. Default PUBLIC_URL/auth/callback. */
  OIDC_REDIRECT_URL: z.url({ protocol: /^https?$/ }).optional(),
  /** The name on the sign-in button ("Sign in with <name>"). Default: the issuer's host name. */
  OIDC_PROVIDER_NAME: z.string().trim().min(1).max(60).regex(/^[^\u0000-\u001f\u007f-\u009f\u2028\u2029]*$/, { error: "must be one line of text" }).optional(),
  /**
   * Scopes asked for, space-separated; must include openid. `offline_access` asks for the refresh
   * token that the hourly re-check uses (without one a session ends at its first re-check and the
   * person signs in again). Default "openid email profile offline_access".
   */
  OIDC_SCOPES: z
    .string()
    .trim()
    .regex(/^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/, { error: "must be scope names separated by single spaces" })
    .refine((s) => s.split(" ").includes("openid"), { error: "must include openid" })
    .default("openid email profile offline_access"),
  /**
   * The claim (ID token or userinfo) that lists the person's groups; a dotted path reaches into an
   * object (`realm_access.roles` for Keycloak realm roles). Default "groups".
   */
  OIDC_GROUPS_CLAIM: z.string().regex(/^[A-Za-z0-9_:\/-]+(\.[A-Za-z0-9_:\/-]+)*$/, { error: "must be a claim name or a dotted path of claim names" }).default("groups"),
  /**
   * Which groups give which roles (auth/role-map.ts): `group=role,…`, a group named twice gets both;
   * or JSON `{"<group>": ["role", …]}` for group names holding `,` or `=`. Roles are re-read at
   * every sign-in and every re-check. Default "comms-staff=author,comms-approvers=approver,it-oncall=ops,airlock-admins=admin".
   */
  OIDC_ROLE_MAP: z
    .string()
    .default(DEFAULT_ROLE_MAP)
    .superRefine((s, ctx) => {
      const r = parseRoleMap(s);
      if (!r.ok) ctx.addIssue({ code: "custom", message: r.reason });
    }),
  /**
   * A person whose groups give no role: `refuse` (a page says so, audited; the default), or the one
   * role they get instead (least privilege: `author`).
   */
  OIDC_UNMAPPED: z.enum(["refuse", ...ROLES]).default("refuse"),
  /**
   * The claim that says the email address is verified; it must be `true`. Default "email_verified"
   * (Entra ID sends none: use its optional claim `xms_edov`).
   */
  OIDC_EMAIL_VERIFIED_CLAIM: z.string().regex(/^[A-Za-z0-9_:-]{1,100}$/, { error: "must be a claim name" }).default("email_verified"),
  /**
   * Seconds between re-checks of a signed-in person at the provider (refresh-token grant): groups
   * that no longer map, or a refused refresh, end the session at the next request after it. At most
   * 3600 (hourly). Default 3600.
   */
  OIDC_RECHECK_SECONDS: int(5, 3600).default(3600),
  /**
   * Who may sign in to the dashboard with an API token: `everyone` (the default), `admins` (the
   * break-glass sign-in: USERS_FILE users holding `admin`; everyone else uses OpenID Connect), or
   * `off`. Sessions the setting no longer allows end at their next request. API bearer tokens are
   * not affected. `admins` and `off` need OIDC_ISSUER.
   */
  DASHBOARD_TOKEN_SIGNIN: z.enum(["everyone", "admins", "off"]).default("everyone"),
  /** pino log level. */
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type Config = Readonly<
  Omit<z.infer<typeof schema>, "SMTP_TLS"> & {
    PUBLIC_URL: string;
    production: boolean;
    SMTP_TLS: "required" | "opportunistic" | "none";
    oidc: OidcSettings | null;
    /** The PURGE_* settings (purge/purge-settings.ts): which connector removes a recalled message from the mailboxes, if any. */
    purge: PurgeSettings;
  }
>;

/** OpenID Connect sign-in, resolved (the secret stays in OIDC_CLIENT_SECRET, which the settings audit shows only as set). */
export interface OidcSettings {
  issuer: string;
  clientId: string;
  redirectUrl: string;
  providerName: string;
  scopes: string;
  groupsClaim: string;
  roleMap: string;
  unmapped: "refuse" | Role;
  emailVerifiedClaim: string;
  recheckMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const REQUIRED_IN_PRODUCTION = ["SMTP_URL", "USERS_FILE", "LINK_SECRET", "AUDIT_SECRET"] as const;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "unset": `FOO= npm start` should not be a validation error.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = schema.safeParse(cleaned);
  // PURGE_* have their own schema (purge/purge-settings.ts); their problems are reported with the others.
  const purge = parsePurgeSettings(cleaned);
  const problems = [...(parsed.success ? [] : parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`)), ...(purge.ok ? [] : purge.problems)];
  if (!parsed.success || !purge.ok) throw new ConfigError(problems);
  const c = parsed.data;
  const production = c.NODE_ENV === "production";
  if (production) {
    const missing: string[] = REQUIRED_IN_PRODUCTION.filter((k) => c[k] === undefined);
    if (c.REDIS_URL === undefined && c.REDIS_SENTINELS === undefined) missing.unshift("REDIS_URL");
    if (missing.length) throw new ConfigError(missing.map((k) => `${k}: required when NODE_ENV=production${k === "REDIS_URL" ? " (or REDIS_SENTINELS)" : ""}`));
  }
  if (c.REDIS_MIN_REPLICAS_ACK > 0 && c.REDIS_URL === undefined && c.REDIS_SENTINELS === undefined) {
    throw new ConfigError(["REDIS_MIN_REPLICAS_ACK: needs REDIS_URL or REDIS_SENTINELS (the development Redis has no replicas)"]);
  }
  const directoryProblems = checkDirectoryConfig(c);
  if (directoryProblems.length) throw new ConfigError(directoryProblems);
  const publicUrl = (c.PUBLIC_URL ?? `http://localhost:${c.PORT}`).replace(/\/+$/, "");
  const oidc = oidcSettings(c, publicUrl, production);
  return Object.freeze({
    ...c,
    OIDC_CLIENT_SECRET: oidc?.secret,
    oidc: oidc ? Object.freeze(oidc.settings) : null,
    purge: purge.settings,
    PUBLIC_URL: publicUrl,
    SMTP_TLS: c.SMTP_TLS ?? defaultSmtpTls(c.SMTP_URL, production),
    production,
  });
}

/** `required` in production to a host other than loopback; `opportunistic` otherwise (development sinks rarely have a certificate). */
function defaultSmtpTls(smtpUrl: string | undefined, production: boolean): "required" | "opportunistic" {
  if (!production || !smtpUrl) return "opportunistic";
  const host = new URL(smtpUrl).hostname.replace(/^\[|\]$/g, "");
  const loopback = host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
  return loopback ? "opportunistic" : "required";
}

/** The OIDC_ settings taken together: all or nothing, one secret, https in production. */
function oidcSettings(c: z.infer<typeof schema>, publicUrl: string, production: boolean): { settings: OidcSettings; secret: string } | null {
  if (!c.OIDC_ISSUER) {
    const stray = (["OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET", "OIDC_CLIENT_SECRET_FILE", "OIDC_REDIRECT_URL", "OIDC_PROVIDER_NAME"] as const).filter((k) => c[k] !== undefined);
    const problems = stray.map((k) => `${k}: needs OIDC_ISSUER (OpenID Connect sign-in is off without it)`);
    if (c.DASHBOARD_TOKEN_SIGNIN !== "everyone") problems.push(`DASHBOARD_TOKEN_SIGNIN: "${c.DASHBOARD_TOKEN_SIGNIN}" needs OIDC_ISSUER (else most people could not sign in to the dashboard)`);
    if (problems.length) throw new ConfigError(problems);
    return null;
  }
  const problems: string[] = [];
  if (!c.OIDC_CLIENT_ID) problems.push("OIDC_CLIENT_ID: required with OIDC_ISSUER");
  if (c.OIDC_CLIENT_SECRET !== undefined && c.OIDC_CLIENT_SECRET_FILE !== undefined) problems.push("OIDC_CLIENT_SECRET_FILE: give the secret or its file, not both");
  if (c.OIDC_CLIENT_SECRET === undefined && c.OIDC_CLIENT_SECRET_FILE === undefined) problems.push("OIDC_CLIENT_SECRET: required with OIDC_ISSUER (or OIDC_CLIENT_SECRET_FILE)");
  if (production && !c.OIDC_ISSUER.startsWith("https:")) problems.push("OIDC_ISSUER: must be https when NODE_ENV=production");
  const redirectUrl = c.OIDC_REDIRECT_URL ?? `${publicUrl}/auth/callback`;
  if (production && !redirectUrl.startsWith("https:")) problems.push(`OIDC_REDIRECT_URL: must be https when NODE_ENV=production (${c.OIDC_REDIRECT_URL ? "it is" : "PUBLIC_URL gives"} ${redirectUrl})`);
  let secret = c.OIDC_CLIENT_SECRET;
  if (c.OIDC_CLIENT_SECRET_FILE !== undefined && c.OIDC_CLIENT_SECRET === undefined) {
    try {
      secret = readFileSync(c.OIDC_CLIENT_SECRET_FILE, "utf8").replace(/\r?\n$/, "");
      if (!secret) problems.push(`OIDC_CLIENT_SECRET_FILE: ${c.OIDC_CLIENT_SECRET_FILE} is empty`);
    } catch (e) {
      problems.push(`OIDC_CLIENT_SECRET_FILE: cannot read ${c.OIDC_CLIENT_SECRET_FILE} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
  }
  if (problems.length) throw new ConfigError(problems);
  return {
    secret: secret!,
    settings: {
      issuer: c.OIDC_ISSUER,
      clientId: c.OIDC_CLIENT_ID!,
      redirectUrl,
      providerName: c.OIDC_PROVIDER_NAME ?? new URL(c.OIDC_ISSUER).hostname,
      scopes: c.OIDC_SCOPES,
      groupsClaim: c.OIDC_GROUPS_CLAIM,
      roleMap: c.OIDC_ROLE_MAP,
      unmapped: c.OIDC_UNMAPPED,
      emailVerifiedClaim: c.OIDC_EMAIL_VERIFIED_CLAIM,
      recheckMs: c.OIDC_RECHECK_SECONDS * 1000,
    },
  };
}
