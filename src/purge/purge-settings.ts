/**
 * The purge settings (SPEC "Recall into the mailboxes", promise 10): one zod schema over the
 * `PURGE_*` environment variables, parsed once at start with the secrets files read then, and the
 * connector they name. Each variable is documented where it is declared, with its default; a bad
 * one is reported by name. Secrets have no default and are never part of a problem's text.
 */
import { readFileSync } from "node:fs";
import { createPrivateKey } from "node:crypto";
import { z } from "zod";
import type { PurgeConnector } from "./connector.js";
import type { PurgeLog } from "./slots.js";
import { GmailPurgeConnector, type GmailPurgeSettings, type GoogleServiceAccount } from "./gmail-connector.js";
import { GraphPurgeConnector, type GraphPurgeSettings } from "./graph-connector.js";
import { ImapPurgeConnector, type ImapPurgeSettings } from "./imap-connector.js";

const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);
const GUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** An https URL, or http to this machine (a local stand-in in tests); no credentials, query or fragment. */
const serviceUrl = z.url({ protocol: /^https?$/, error: "must be an https URL" }).refine(
  (u) => {
    const url = new URL(u);
    return (url.protocol === "https:" || isLoopback(url.hostname)) && !url.username && !url.password && !url.search && !url.hash;
  },
  { error: "must be an https URL without credentials, query or fragment (http only to this machine)" },
);

const schema = z.object({
  /** Which purge connector removes a recalled message from the recipients' mailboxes: `imap`, `graph` or `gmail`. Unset: no purge (the default). */
  PURGE_CONNECTOR: z.enum(["imap", "graph", "gmail"], { error: "must be imap, graph or gmail (unset: no purge)" }).optional(),
  /** Purges (mailboxes) worked on at once, per worker process: IMAP sessions, or HTTP requests in flight. Default 4. */
  PURGE_CONCURRENCY: int(1, 64).default(4),
  /** Mailboxes purged per second, across all workers (the mail servers' own throttling is honoured besides). Default 20. */
  PURGE_RATE_PER_SECOND: z.coerce.number().positive().max(10_000).default(20),
  /** How long, after the recall, a `not_found` is tried again: the message may still be in transit to the mailbox. 0: not retried. Default 30. */
  PURGE_NOT_FOUND_RETRY_MINUTES: int(0, 24 * 60).default(30),
  /** How often a `not_found` is tried again within PURGE_NOT_FOUND_RETRY_MINUTES. Default 60. */
  PURGE_NOT_FOUND_RETRY_EVERY_SECONDS: int(1, 3600).default(60),
  /**
   * How long the standard correction to a recipient may wait for the first answer of their purge,
   * so that it can say whether the message was removed from their mailbox (store/lua/claim.lua).
   * A failed login is an answer and delays nobody; the correction's jobs wait aside, holding no
   * worker. At most an hour (the correction is due "at once": this only lets it say more). Default 120.
   */
  PURGE_CORRECTION_WAIT_SECONDS: int(0, 3600).default(120),

  /** imap: the server, `imaps://mail.corp.example` (TLS from the first byte, port 993 by default) or `imap://mail.corp.example` (port 143, STARTTLS). No credentials in it. */
  PURGE_IMAP_URL: z
    .url({ protocol: /^imaps?$/, error: "must be imaps://host[:port] or imap://host[:port]" })
    .refine((u) => !new URL(u).username && !new URL(u).password, { error: "must not carry credentials: use PURGE_IMAP_ADMIN_USER and PURGE_IMAP_ADMIN_PASSWORD(_FILE)" })
    .refine((u) => ["", "/"].includes(new URL(u).pathname) && !new URL(u).search, { error: "must be imaps://host[:port] or imap://host[:port], nothing after the port" })
    .optional(),
  /**
   * imap: `implicit` (imaps://), `starttls` (imap://, the upgrade required) or `none` (imap:// to
   * this machine only: the admin's password opens every mailbox). Default: from the URL.
   */
  PURGE_IMAP_TLS: z.enum(["implicit", "starttls", "none"], { error: "must be implicit, starttls or none" }).optional(),
  /** imap: PEM file of the CA that signed the server's certificate (a private CA); default Node's store. Read at start. */
  PURGE_IMAP_CA_FILE: z.string().min(1).optional(),
  /** imap: the name checked against the server's certificate; default the URL's host. */
  PURGE_IMAP_SERVERNAME: z.string().regex(HOST_NAME, { error: "must be a host name" }).optional(),
  /** imap: the admin (Dovecot master user) who may open every mailbox. */
  PURGE_IMAP_ADMIN_USER: z.string().min(1).regex(/^[^\s"\\]+$/, { error: "must have no spaces, quotes or backslashes" }).optional(),
  /** imap: the admin's password (or PURGE_IMAP_ADMIN_PASSWORD_FILE, not both). */
  PURGE_IMAP_ADMIN_PASSWORD: z.string().min(1).optional(),
  /** imap: a file holding the admin's password (one trailing newline ignored). Read at start. */
  PURGE_IMAP_ADMIN_PASSWORD_FILE: z.string().min(1).optional(),
  /** imap: Dovecot's `auth_master_user_separator`: the login is `recipient<separator>admin`. Default `*`. */
  PURGE_IMAP_MASTER_SEPARATOR: z.string().regex(/^[!-~]{1,4}$/, { error: "must be 1 to 4 printable characters, no spaces" }).default("*"),
  /** imap: the folders to search, comma-separated (`INBOX,Archive`). Default: every selectable folder of the recipient's own namespace. */
  PURGE_IMAP_FOLDERS: z
    .string()
    .transform((raw, ctx) => {
      const folders = raw.split(",").map((f) => f.trim()).filter(Boolean);
      if (!folders.length || folders.some((f) => /[\x00-\x1f\x7f]/.test(f))) {
        ctx.addIssue({ code: "custom", message: "must name folders, comma-separated, without control characters" });
        return z.NEVER;
      }
      return folders;
    })
    .optional(),

  /** graph: the Microsoft Entra tenant: its id (a GUID) or a verified domain (`corp.example`). */
  PURGE_GRAPH_TENANT_ID: z
    .string()
    .refine((t) => GUID.test(t) || (HOST_NAME.test(t) && t.includes(".")), { error: "must be the tenant's id (a GUID) or a verified domain such as corp.example" })
    .optional(),
  /** graph: the app registration's application (client) id, a GUID. */
  PURGE_GRAPH_CLIENT_ID: z.string().regex(GUID, { error: "must be the app registration's application (client) id, a GUID" }).optional(),
  /** graph: a client secret of that app (or PURGE_GRAPH_CLIENT_SECRET_FILE, not both). */
  PURGE_GRAPH_CLIENT_SECRET: z.string().min(1).optional(),
  /** graph: a file holding the client secret (one trailing newline ignored). Read at start. */
  PURGE_GRAPH_CLIENT_SECRET_FILE: z.string().min(1).optional(),
  /** graph: where tokens come from. Default `https://login.microsoftonline.com` (national clouds have their own). */
  PURGE_GRAPH_LOGIN_URL: serviceUrl.default("https://login.microsoftonline.com"),
  /** graph: Microsoft Graph with its version. Default `https://graph.microsoft.com/v1.0`. */
  PURGE_GRAPH_API_URL: serviceUrl.default("https://graph.microsoft.com/v1.0"),

  /** gmail: the service account's JSON key file (client_email, private_key, token_uri). Read at start. */
  PURGE_GMAIL_SERVICE_ACCOUNT_FILE: z.string().min(1).optional(),
  /** gmail: `trash` (recoverable for 30 days; scope gmail.modify) or `delete` (at once, for good; scope https://mail.google.com/). Default `trash`. */
  PURGE_GMAIL_MODE: z.enum(["trash", "delete"], { error: "must be trash or delete" }).default("trash"),
  /** gmail: the Gmail API. Default `https://gmail.googleapis.com`. */
  PURGE_GMAIL_API_URL: serviceUrl.default("https://gmail.googleapis.com"),
});

type Env = z.infer<typeof schema>;

/** The fields of a service account key file, as Google issues it. */
const serviceAccountKey = z.object({
  type: z.literal("service_account", { error: 'must be "service_account" (this is not a service account key)' }).optional(),
  client_email: z.email({ error: "must be the service account's email" }),
  private_key: z.string().includes("PRIVATE KEY", { error: "must be the PEM private key" }),
  token_uri: serviceUrl.default("https://oauth2.googleapis.com/token"),
  client_id: z.string().optional(),
});

export interface PurgeCommon {
  concurrency: number;
  ratePerSecond: number;
  notFoundRetryMinutes: number;
  notFoundRetryEverySeconds: number;
  correctionWaitSeconds: number;
}

export type PurgeSettings = Readonly<
  PurgeCommon &
    (
      | { connector: null }
      | { connector: "imap"; imap: Readonly<ImapPurgeSettings> }
      | { connector: "graph"; graph: Readonly<GraphPurgeSettings> }
      | { connector: "gmail"; gmail: Readonly<GmailPurgeSettings> }
    )
>;

export type ParsedPurgeSettings = { ok: true; settings: PurgeSettings } | { ok: false; problems: string[] };

const PREFIXES = { imap: "PURGE_IMAP_", graph: "PURGE_GRAPH_", gmail: "PURGE_GMAIL_" } as const;

export function parsePurgeSettings(env: NodeJS.ProcessEnv = process.env): ParsedPurgeSettings {
  // An empty variable means "unset", as in config.ts.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([k, v]) => k.startsWith("PURGE_") && v !== undefined && v !== ""));
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) return { ok: false, problems: parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`) };
  const e = parsed.data;
  const problems: string[] = [];

  // Another connector's variables beside the chosen one (or with none chosen) are a mistake
  // waiting to be found: a purge that does not happen, or happens elsewhere.
  for (const [name, prefix] of Object.entries(PREFIXES)) {
    if (name === e.PURGE_CONNECTOR) continue;
    for (const key of Object.keys(cleaned).filter((k) => k.startsWith(prefix))) {
      problems.push(`${key}: set, but PURGE_CONNECTOR is ${e.PURGE_CONNECTOR ?? "unset (no purge)"}: set PURGE_CONNECTOR=${name} or remove it`);
    }
  }

  const common: PurgeCommon = {
    concurrency: e.PURGE_CONCURRENCY,
    ratePerSecond: e.PURGE_RATE_PER_SECOND,
    notFoundRetryMinutes: e.PURGE_NOT_FOUND_RETRY_MINUTES,
    notFoundRetryEverySeconds: e.PURGE_NOT_FOUND_RETRY_EVERY_SECONDS,
    correctionWaitSeconds: e.PURGE_CORRECTION_WAIT_SECONDS,
  };
  let settings: PurgeSettings | undefined;
  if (e.PURGE_CONNECTOR === undefined) settings = { ...common, connector: null };
  else if (e.PURGE_CONNECTOR === "imap") {
    const imap = imapSettings(e, common, problems);
    if (imap) settings = { ...common, connector: "imap", imap };
  } else if (e.PURGE_CONNECTOR === "graph") {
    const graph = graphSettings(e, common, problems);
    if (graph) settings = { ...common, connector: "graph", graph };
  } else {
    const gmail = gmailSettings(e, common, problems);
    if (gmail) settings = { ...common, connector: "gmail", gmail };
  }
  if (problems.length || !settings) return { ok: false, problems };
  return { ok: true, settings: deepFreeze(settings) };
}

/**
 * The connector the settings name, or null when no purge is configured. `log` gets the
 * connector's own lines (a pino logger will do).
 */
export function createPurgeConnector(settings: PurgeSettings, log?: PurgeLog): PurgeConnector | null {
  switch (settings.connector) {
    case null:
      return null;
    case "imap":
      return new ImapPurgeConnector({ ...settings.imap, ...(log ? { log } : {}) });
    case "graph":
      return new GraphPurgeConnector({ ...settings.graph, ...(log ? { log } : {}) });
    case "gmail":
      return new GmailPurgeConnector({ ...settings.gmail, ...(log ? { log } : {}) });
  }
}

function imapSettings(e: Env, common: PurgeCommon, problems: string[]): ImapPurgeSettings | undefined {
  const before = problems.length;
  required(e, ["PURGE_IMAP_URL", "PURGE_IMAP_ADMIN_USER"], "imap", problems);
  const password = secret(e, "PURGE_IMAP_ADMIN_PASSWORD", problems, "imap");
  if (!e.PURGE_IMAP_URL) return undefined;
  const url = new URL(e.PURGE_IMAP_URL);
  const implicit = url.protocol === "imaps:";
  const tls = e.PURGE_IMAP_TLS ?? (implicit ? "implicit" : "starttls");
  if (implicit && tls !== "implicit") problems.push(`PURGE_IMAP_TLS: ${tls} contradicts PURGE_IMAP_URL imaps:// (TLS from the first byte): use imap:// or leave PURGE_IMAP_TLS unset`);
  if (!implicit && tls === "implicit") problems.push("PURGE_IMAP_TLS: implicit needs PURGE_IMAP_URL imaps://");
  const host = url.hostname.replace(/^\[|\]$/g, "");
  if (tls === "none" && !isLoopback(host)) problems.push(`PURGE_IMAP_TLS: none only to this machine (the admin's password opens every mailbox), not to ${host}`);
  let ca: string[] | undefined;
  if (e.PURGE_IMAP_CA_FILE) {
    const pem = readSecretFile("PURGE_IMAP_CA_FILE", e.PURGE_IMAP_CA_FILE, problems);
    if (pem !== undefined && !pem.includes("-----BEGIN CERTIFICATE-----")) problems.push(`PURGE_IMAP_CA_FILE: ${e.PURGE_IMAP_CA_FILE} holds no PEM certificate`);
    else if (pem !== undefined) ca = [pem];
  }
  if (problems.length > before || password === undefined) return undefined;
  return {
    host,
    port: url.port ? Number(url.port) : implicit ? 993 : 143,
    tls,
    ...(ca ? { ca } : {}),
    ...(e.PURGE_IMAP_SERVERNAME ? { servername: e.PURGE_IMAP_SERVERNAME } : {}),
    adminUser: e.PURGE_IMAP_ADMIN_USER!,
    adminPassword: password,
    loginFormat: "dovecot-master",
    masterSeparator: e.PURGE_IMAP_MASTER_SEPARATOR,
    folders: e.PURGE_IMAP_FOLDERS ?? "all",
    connections: common.concurrency,
  };
}

function graphSettings(e: Env, common: PurgeCommon, problems: string[]): GraphPurgeSettings | undefined {
  const before = problems.length;
  required(e, ["PURGE_GRAPH_TENANT_ID", "PURGE_GRAPH_CLIENT_ID"], "graph", problems);
  const clientSecret = secret(e, "PURGE_GRAPH_CLIENT_SECRET", problems, "graph");
  if (problems.length > before || clientSecret === undefined) return undefined;
  return {
    tenantId: e.PURGE_GRAPH_TENANT_ID!,
    clientId: e.PURGE_GRAPH_CLIENT_ID!,
    clientSecret,
    loginUrl: e.PURGE_GRAPH_LOGIN_URL,
    apiUrl: e.PURGE_GRAPH_API_URL,
    concurrency: common.concurrency,
  };
}

function gmailSettings(e: Env, common: PurgeCommon, problems: string[]): GmailPurgeSettings | undefined {
  required(e, ["PURGE_GMAIL_SERVICE_ACCOUNT_FILE"], "gmail", problems);
  if (!e.PURGE_GMAIL_SERVICE_ACCOUNT_FILE) return undefined;
  const name = "PURGE_GMAIL_SERVICE_ACCOUNT_FILE";
  const path = e.PURGE_GMAIL_SERVICE_ACCOUNT_FILE;
  const text = readSecretFile(name, path, problems);
  if (text === undefined) return undefined;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    problems.push(`${name}: ${path} is not JSON (download the service account's key as JSON)`); // the parser's message could quote the key
    return undefined;
  }
  const key = serviceAccountKey.safeParse(json);
  if (!key.success) {
    for (const i of key.error.issues) problems.push(`${name}: ${path}: ${i.path.join(".") || "the key"}: ${i.message}`);
    return undefined;
  }
  try {
    createPrivateKey(key.data.private_key);
  } catch {
    problems.push(`${name}: ${path}: private_key: cannot be read as a PEM private key`);
    return undefined;
  }
  const serviceAccount: GoogleServiceAccount = {
    client_email: key.data.client_email,
    private_key: key.data.private_key,
    token_uri: key.data.token_uri,
    ...(key.data.client_id ? { client_id: key.data.client_id } : {}),
  };
  return { serviceAccount, mode: e.PURGE_GMAIL_MODE, apiUrl: e.PURGE_GMAIL_API_URL, concurrency: common.concurrency };
}

function required(e: Env, names: Array<keyof Env>, connector: string, problems: string[]): void {
  for (const n of names) if (e[n] === undefined) problems.push(`${n}: required with PURGE_CONNECTOR=${connector}`);
}

/** A secret given as `NAME` or as a file `NAME_FILE`: exactly one of them. */
function secret(e: Env, name: "PURGE_IMAP_ADMIN_PASSWORD" | "PURGE_GRAPH_CLIENT_SECRET", problems: string[], connector: string): string | undefined {
  const direct = e[name];
  const file = e[`${name}_FILE`];
  if (direct !== undefined && file !== undefined) {
    problems.push(`${name}: set together with ${name}_FILE: keep one`);
    return undefined;
  }
  if (direct !== undefined) return direct;
  if (file === undefined) {
    problems.push(`${name}: required with PURGE_CONNECTOR=${connector} (or ${name}_FILE)`);
    return undefined;
  }
  const text = readSecretFile(`${name}_FILE`, file, problems);
  if (text === undefined) return undefined;
  const value = text.replace(/\r?\n$/, "");
  if (!value) problems.push(`${name}_FILE: ${file} is empty`);
  return value || undefined;
}

/** A file's text, or a problem naming the variable, the path and why (never the content). */
function readSecretFile(name: string, path: string, problems: string[]): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === "ENOENT" ? "no such file" : code === "EACCES" ? "not readable by this user" : code === "EISDIR" ? "a directory, not a file" : (code ?? String(err));
    problems.push(`${name}: cannot read ${path}: ${why}`);
    return undefined;
  }
}

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "");
  return h === "localhost" || h === "::1" || /^127\.\d+\.\d+\.\d+$/.test(h);
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object" && !Object.isFrozen(o)) {
    Object.freeze(o);
    for (const v of Object.values(o)) deepFreeze(v);
  }
  return o;
}
