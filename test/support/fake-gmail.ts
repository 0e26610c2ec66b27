/**
 * A local HTTP server that answers as the Gmail API and Google's OAuth 2.0 token endpoint are
 * documented to, for a service account with domain-wide delegation (Google cannot be reached from
 * the test machines). What it models:
 *
 * - `POST /token` with a JWT bearer assertion: the RS256 signature checked against the service
 *   account's public key, `iss`, `aud` and the lifetime checked; a scope not delegated to the
 *   service account gets 401 `unauthorized_client`; an unknown `sub` gets 400 `invalid_grant`
 *   "Invalid email or User ID". A token is the `sub`'s, for that scope, valid 3599 s.
 * - `GET /gmail/v1/users/{user}/messages?q=rfc822msgid:…&includeSpamTrash=…&pageToken=…`: the id
 *   compared **ignoring case**, with or without its angle brackets (as loose as a search may be);
 *   Spam and Trash left out unless asked for; `pageSize` per page with a `nextPageToken` that
 *   counts positions, so that removing between pages shifts what the next page holds.
 * - `GET …/messages/{id}?format=metadata&metadataHeaders=Message-ID`: labels and only the
 *   headers asked for (names compared ignoring case).
 * - `POST …/messages/{id}/trash` (adds TRASH, 200) and `DELETE …/messages/{id}` (204; the
 *   https://mail.google.com/ scope only, else 403 insufficientPermissions).
 * - A token used for another user's path: 403 "Delegation denied"; a user without Gmail: 400
 *   failedPrecondition; a user removed since their token was issued: 404.
 * Throttling, failures and stalls come from the test's `hook`.
 */
import { generateKeyPairSync, randomBytes, verify } from "node:crypto";
import type { GoogleServiceAccount } from "../../src/purge/gmail-connector.js";
import { bearerOf, formOf, startFakeHttp, type Answer, type FakeHttp } from "./fake-http.js";

export interface FakeGmailMessage {
  id: string;
  labelIds: string[];
  headers: Array<{ name: string; value: string }>;
}

export interface FakeGmail extends FakeHttp {
  /** A service account key for this server (its token_uri points here). */
  serviceAccount: GoogleServiceAccount;
  /** For the connector's settings. */
  apiUrl: string;
  /** Scopes the domain's admin delegated to the service account's client id. */
  delegatedScopes: Set<string>;
  /** Results per page of a search; default 100. */
  pageSize: number;
  /** Tokens issued so far, per user. */
  tokensIssued(user?: string): number;
  /** Makes every token issued so far invalid (401). */
  revokeTokens(): void;
  /** Adds messages to a user's mailbox (creating the user); each a Message-ID (or headers) and labels (default INBOX). Returns their ids. */
  put(user: string, messages: Array<string | { headers: Array<{ name: string; value: string }> }>, labelIds?: string[]): string[];
  /** A user the directory knows but who has no Gmail. */
  addUserWithoutGmail(user: string): void;
  /** Removes a user (their cached tokens still look valid to the connector). */
  removeUser(user: string): void;
  /** The user's messages not in Trash, as their Message-ID header values. */
  inbox(user: string): string[];
  /** The user's messages in Trash, as their Message-ID header values. */
  trash(user: string): string[];
}

export async function startFakeGmail(): Promise<FakeGmail> {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const mailboxes = new Map<string, FakeGmailMessage[] | "no-gmail">();
  const tokens = new Map<string, { sub: string; scope: string }>();
  const issued = new Map<string, number>();
  let serial = 0;
  const clientEmail = "airlock-purge@corp-project.iam.gserviceaccount.com";

  const apiError = (code: number, status: string, reason: string, message: string): Answer => ({ status: code, body: { error: { code, message, errors: [{ message, domain: "global", reason }], status } } });

  const tokenEndpoint = (body: string): Answer => {
    const f = formOf(body);
    const refuse = (status: number, error: string, error_description: string): Answer => ({ status, body: { error, error_description } });
    if (f.grant_type !== "urn:ietf:params:oauth:grant-type:jwt-bearer") return refuse(400, "unsupported_grant_type", "Invalid grant_type: " + f.grant_type);
    const parts = (f.assertion ?? "").split(".");
    if (parts.length !== 3) return refuse(400, "invalid_grant", "Invalid JWT: not three parts.");
    const [h, c, s] = parts as [string, string, string];
    const header = JSON.parse(Buffer.from(h, "base64url").toString()) as { alg?: string };
    const claims = JSON.parse(Buffer.from(c, "base64url").toString()) as { iss?: string; sub?: string; scope?: string; aud?: string; iat?: number; exp?: number };
    if (header.alg !== "RS256" || !verify("RSA-SHA256", Buffer.from(`${h}.${c}`), publicKey, Buffer.from(s, "base64url"))) return refuse(400, "invalid_grant", "Invalid JWT Signature.");
    if (claims.iss !== clientEmail) return refuse(401, "invalid_client", "The OAuth client was not found.");
    if (claims.aud !== fake.serviceAccount.token_uri) return refuse(400, "invalid_grant", "Invalid JWT: Failed audience check.");
    if (typeof claims.iat !== "number" || typeof claims.exp !== "number" || claims.exp <= claims.iat || claims.exp - claims.iat > 3600) {
      return refuse(400, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.");
    }
    if (!claims.scope || !claims.scope.split(" ").every((x) => fake.delegatedScopes.has(x))) {
      return refuse(401, "unauthorized_client", "Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.");
    }
    if (!claims.sub || !mailboxes.has(claims.sub)) return refuse(400, "invalid_grant", "Invalid email or User ID");
    const token = `ya29.${randomBytes(24).toString("base64url")}`;
    tokens.set(token, { sub: claims.sub, scope: claims.scope });
    issued.set(claims.sub, (issued.get(claims.sub) ?? 0) + 1);
    return { status: 200, body: { access_token: token, expires_in: 3599, token_type: "Bearer" } };
  };

  const api = (method: string, url: URL, token: string | undefined): Answer => {
    const grant = token ? tokens.get(token) : undefined;
    if (!grant) return apiError(401, "UNAUTHENTICATED", "authError", "Request had invalid authentication credentials. Expected OAuth 2 access token.");
    const m = /^\/gmail\/v1\/users\/([^/]+)\/messages(?:\/([^/]+)(\/trash)?)?$/.exec(url.pathname);
    if (!m) return apiError(404, "NOT_FOUND", "notFound", "Not Found");
    const user = decodeURIComponent(m[1]!);
    const me = user === "me" ? grant.sub : user;
    if (me !== grant.sub) return apiError(403, "PERMISSION_DENIED", "forbidden", `Delegation denied for ${grant.sub}`);
    const box = mailboxes.get(me);
    if (!box) return apiError(404, "NOT_FOUND", "notFound", "Requested entity was not found.");
    if (box === "no-gmail") return apiError(400, "FAILED_PRECONDITION", "failedPrecondition", "Mail service not enabled");

    if (!m[2]) {
      if (method !== "GET") return apiError(405, "INVALID_ARGUMENT", "badRequest", "Method not allowed");
      const q = /^rfc822msgid:(\S+)$/.exec(url.searchParams.get("q") ?? "");
      if (!q) return apiError(400, "INVALID_ARGUMENT", "invalidArgument", "Invalid query");
      const loose = (v: string) => v.trim().replace(/^<|>$/g, "").toLowerCase();
      const wanted = loose(q[1]!);
      const withSpamTrash = url.searchParams.get("includeSpamTrash") === "true";
      const all = box.filter((x) => (withSpamTrash || !x.labelIds.some((l) => l === "SPAM" || l === "TRASH")) && x.headers.some((h) => h.name.toLowerCase() === "message-id" && loose(h.value) === wanted));
      const at = Number(/^p(\d+)$/.exec(url.searchParams.get("pageToken") ?? "")?.[1] ?? 0);
      const page = all.slice(at, at + fake.pageSize);
      const next = at + fake.pageSize < all.length ? { nextPageToken: `p${at + fake.pageSize}` } : {};
      return { status: 200, body: { ...(page.length ? { messages: page.map((x) => ({ id: x.id, threadId: x.id })) } : {}), ...next, resultSizeEstimate: all.length } };
    }
    const id = decodeURIComponent(m[2]);
    const at = box.findIndex((x) => x.id === id);
    if (at < 0) return apiError(404, "NOT_FOUND", "notFound", "Requested entity was not found.");
    const msg = box[at]!;
    if (method === "GET" && !m[3]) {
      const wantedHeaders = url.searchParams.getAll("metadataHeaders").map((x) => x.toLowerCase());
      if (url.searchParams.get("format") !== "metadata") return apiError(400, "INVALID_ARGUMENT", "invalidArgument", "only format=metadata is modelled");
      return { status: 200, body: { id, threadId: id, labelIds: msg.labelIds, snippet: "", payload: { mimeType: "text/plain", headers: msg.headers.filter((x) => wantedHeaders.includes(x.name.toLowerCase())) }, sizeEstimate: 1200 } };
    }
    if (method === "POST" && m[3]) {
      msg.labelIds = ["TRASH", ...msg.labelIds.filter((l) => l !== "INBOX" && l !== "SPAM" && l !== "TRASH")];
      return { status: 200, body: { id, threadId: id, labelIds: msg.labelIds } };
    }
    if (method === "DELETE" && !m[3]) {
      if (grant.scope !== "https://mail.google.com/") return apiError(403, "PERMISSION_DENIED", "insufficientPermissions", "Request had insufficient authentication scopes.");
      box.splice(at, 1);
      return { status: 204 };
    }
    return apiError(405, "INVALID_ARGUMENT", "badRequest", "Method not allowed");
  };

  const http = await startFakeHttp((req, url, body) => (url.pathname === "/token" && req.method === "POST" ? tokenEndpoint(body) : api(req.method ?? "GET", url, bearerOf(req))));
  const ids = (user: string, trashed: boolean) => {
    const box = mailboxes.get(user);
    if (!Array.isArray(box)) return [];
    return box.filter((x) => x.labelIds.includes("TRASH") === trashed).map((x) => x.headers.find((h) => h.name.toLowerCase() === "message-id")?.value ?? "");
  };
  const fake: FakeGmail = Object.assign(http, {
    serviceAccount: {
      client_email: clientEmail,
      private_key: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
      token_uri: `${http.origin}/token`,
      client_id: "104502984711234567890",
    },
    apiUrl: http.origin,
    delegatedScopes: new Set(["https://www.googleapis.com/auth/gmail.modify", "https://mail.google.com/"]),
    pageSize: 100,
    tokensIssued: (user?: string) => (user ? (issued.get(user) ?? 0) : [...issued.values()].reduce((a, b) => a + b, 0)),
    revokeTokens: () => tokens.clear(),
    put(user: string, messages: Array<string | { headers: Array<{ name: string; value: string }> }>, labelIds = ["INBOX"]) {
      const box = mailboxes.get(user);
      const list = Array.isArray(box) ? box : [];
      mailboxes.set(user, list);
      // Gmail ids are 16 hex digits.
      const added = messages.map((x) => ({ id: (0x18c0000000000000n + BigInt(++serial)).toString(16), labelIds: [...labelIds], headers: typeof x === "string" ? [{ name: "Message-ID", value: x }] : x.headers }));
      list.push(...added);
      return added.map((x) => x.id);
    },
    addUserWithoutGmail: (user: string) => void mailboxes.set(user, "no-gmail"),
    removeUser: (user: string) => void mailboxes.delete(user),
    inbox: (user: string) => ids(user, false),
    trash: (user: string) => ids(user, true),
  });
  return fake;
}
