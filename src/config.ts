/**
 * Configuration: one zod schema, parsed once at start, frozen.
 * A bad or missing variable is reported by name; secrets have no default outside development.
 */
import { z } from "zod";
import { parseDomainList } from "./domain/recipient-domains.js";
import { parseMailbox } from "./domain/sender.js";

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
  /** Envelope recipients per SMTP transaction. Default 50; 1 means one transaction per recipient. */
  RECIPIENTS_PER_TRANSACTION: int(1, 1000).default(50),
  /** Number of `trust proxy` hops in front of the service. Default 0. */
  TRUST_PROXY_HOPS: int(0, 10).default(0),
  /** Requests per minute per client address to /api. Default 600. */
  API_RATE_LIMIT_PER_MINUTE: int(1, 1_000_000).default(600),
  /** Requests per minute per client address to /links (a person needs two per link). Default 60. */
  LINK_RATE_LIMIT_PER_MINUTE: int(1, 1_000_000).default(60),
  /** Seconds before the jobs of a crashed worker are taken over by another. Default 30. */
  WORKER_LOCK_SECONDS: int(2, 600).default(30),
  /** A worker-only process (`npm run start:worker`) serves GET /metrics on this port when set. */
  METRICS_PORT: int(0, 65535).optional(),
  /** pino log level. */
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
});

export type Config = Readonly<z.infer<typeof schema> & { PUBLIC_URL: string; production: boolean }>;

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  - ${p}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

const REQUIRED_IN_PRODUCTION = ["REDIS_URL", "SMTP_URL", "USERS_FILE", "LINK_SECRET"] as const;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  // An empty variable means "unset": `FOO= npm start` should not be a validation error.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ""));
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`));
  }
  const c = parsed.data;
  const production = c.NODE_ENV === "production";
  if (production) {
    const missing = REQUIRED_IN_PRODUCTION.filter((k) => c[k] === undefined);
    if (missing.length) throw new ConfigError(missing.map((k) => `${k}: required when NODE_ENV=production`));
  }
  return Object.freeze({ ...c, PUBLIC_URL: (c.PUBLIC_URL ?? `http://localhost:${c.PORT}`).replace(/\/+$/, ""), production });
}
