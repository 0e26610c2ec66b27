/**
 * A local HTTP server that answers as Microsoft Graph and the Microsoft identity platform's token
 * endpoint are documented to (Graph cannot be reached from the test machines). What it models:
 *
 * - `POST /{tenant}/oauth2/v2.0/token`, client credentials: errors as Entra ID words them
 *   (`invalid_request` AADSTS90002 for an unknown tenant, `unauthorized_client` AADSTS700016 for an
 *   unknown app, `invalid_client` AADSTS7000215 for a wrong secret), a token valid 3599 s.
 * - `GET /v1.0/users/{upn}/messages?$filter=internetMessageId eq '…'&$select=…`: the OData string
 *   literal parsed strictly (quotes doubled), compared **ignoring case** as Exchange does, results
 *   paged `pageSize` at a time with an `@odata.nextLink` that counts positions (`$skip`), so that a
 *   deletion between pages shifts what the next page holds, as it does in Exchange.
 * - `DELETE /v1.0/users/{upn}/messages/{id}`: 204, the message moved out of the mailbox's view
 *   (to Recoverable Items: gone from `messages`); 404 ErrorItemNotFound when it is not there.
 * - 401 InvalidAuthenticationToken for an unknown or revoked token; 403 ErrorAccessDenied without
 *   the permission (`Mail.Read` may list, only `Mail.ReadWrite` may delete) or outside an
 *   application access policy; 404 ErrorInvalidUser for an unknown user.
 * Throttling (429 with Retry-After), failures and stalls come from the test's `hook`.
 */
import { randomBytes } from "node:crypto";
import { bearerOf, formOf, startFakeHttp, type Answer, type FakeHttp } from "./fake-http.js";

export interface FakeGraphMessage {
  id: string;
  internetMessageId: string | null;
  parentFolderId: string;
}

export interface FakeGraph extends FakeHttp {
  tenantId: string;
  clientId: string;
  clientSecret: string;
  /** For the connector's settings: `loginUrl` and `apiUrl`. */
  loginUrl: string;
  apiUrl: string;
  /** Results per page of a search; default 10, as Graph's. */
  pageSize: number;
  /** The app's application permissions; default Mail.ReadWrite. */
  permissions: Set<string>;
  /** An application access policy: the mailboxes the app may reach; unset: all. */
  accessPolicy: Set<string> | undefined;
  /** Tokens issued so far. */
  tokensIssued(): number;
  /** Makes every token issued so far invalid (401), as a revoked consent does. */
  revokeTokens(): void;
  /** Adds messages to a user's mailbox (creating the user), in `folder` (default "inbox"); returns their ids. */
  put(upn: string, internetMessageIds: Array<string | null>, folder?: string): string[];
  /** What is left in a user's mailbox, in order. */
  messages(upn: string): FakeGraphMessage[];
}

export async function startFakeGraph(): Promise<FakeGraph> {
  const tenantId = "8f2a1b3c-0000-4000-8000-00000000a11c";
  const clientId = "c1d2e3f4-1111-4111-8111-0000000000a1";
  const clientSecret = `secret~${randomBytes(12).toString("base64url")}`;
  const mailboxes = new Map<string, FakeGraphMessage[]>();
  const tokens = new Set<string>();
  let issued = 0;
  let serial = 0;

  const error = (status: number, code: string, message: string, headers?: Record<string, string>): Answer => ({ status, headers, body: { error: { code, message, innerError: { "request-id": randomBytes(8).toString("hex") } } } });

  const tokenEndpoint = (tenant: string, body: string): Answer => {
    const f = formOf(body);
    const refuse = (status: number, err: string, description: string): Answer => ({ status, body: { error: err, error_description: `${description}\r\nTrace ID: ${randomBytes(8).toString("hex")}`, error_codes: [Number(/AADSTS(\d+)/.exec(description)?.[1] ?? 0)] } });
    if (tenant !== fake.tenantId) return refuse(400, "invalid_request", `AADSTS90002: Tenant '${tenant}' not found.`);
    if (f.grant_type !== "client_credentials") return refuse(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.");
    if (f.client_id !== fake.clientId) return refuse(400, "unauthorized_client", `AADSTS700016: Application with identifier '${f.client_id}' was not found in the directory.`);
    if (f.client_secret !== fake.clientSecret) return refuse(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.");
    if (f.scope !== "https://graph.microsoft.com/.default") return refuse(400, "invalid_scope", `AADSTS1002012: The provided value for scope ${f.scope} is not valid.`);
    const token = `eyJ0eXAi.${randomBytes(24).toString("base64url")}`;
    tokens.add(token);
    issued++;
    return { status: 200, body: { token_type: "Bearer", expires_in: 3599, ext_expires_in: 3599, access_token: token } };
  };

  const api = (method: string, url: URL, token: string | undefined): Answer => {
    if (!token || !tokens.has(token)) return error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.");
    const m = /^\/v1\.0\/users\/([^/]+)\/messages(?:\/([^/]+))?$/.exec(url.pathname);
    if (!m) return error(400, "BadRequest", `Resource not found for the segment '${url.pathname}'.`);
    const upn = decodeURIComponent(m[1]!);
    const box = [...mailboxes.entries()].find(([k]) => k.toLowerCase() === upn.toLowerCase())?.[1]; // UPNs ignore case
    if (!box) return error(404, "ErrorInvalidUser", `The requested user '${upn}' is invalid.`);
    const may = (p: string) => fake.permissions.has(p) && (!fake.accessPolicy || fake.accessPolicy.has(upn.toLowerCase()));
    if (!may("Mail.ReadWrite") && !(method === "GET" && may("Mail.Read"))) return error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.");

    if (method === "DELETE" && m[2]) {
      const id = decodeURIComponent(m[2]);
      const at = box.findIndex((x) => x.id === id);
      if (at < 0) return error(404, "ErrorItemNotFound", "The specified object was not found in the store.");
      box.splice(at, 1);
      return { status: 204 };
    }
    if (method !== "GET" || m[2]) return error(405, "ErrorInvalidRequest", "The OData request is not supported.");

    const filter = /^internetMessageId eq '((?:[^']|'')*)'$/.exec(url.searchParams.get("$filter") ?? "");
    if (!filter) return error(400, "BadRequest", "Invalid filter clause");
    const wanted = filter[1]!.replaceAll("''", "'").toLowerCase();
    const select = (url.searchParams.get("$select") ?? "id,internetMessageId,parentFolderId").split(",");
    const skip = Number(url.searchParams.get("$skip") ?? 0);
    const all = box.filter((x) => x.internetMessageId?.toLowerCase() === wanted);
    const page = all.slice(skip, skip + fake.pageSize).map((x) => Object.fromEntries([["@odata.etag", `W/"${x.id.slice(-6)}"`], ...select.map((k) => [k, x[k as keyof FakeGraphMessage]])]));
    const more = skip + fake.pageSize < all.length;
    const q = (k: string, v: string) => `${k}=${encodeURIComponent(v).replace(/'/g, "%27")}`;
    return {
      status: 200,
      body: {
        "@odata.context": `${fake.apiUrl}/$metadata#users('${upn}')/messages(${select.join(",")})`,
        value: page,
        ...(more ? { "@odata.nextLink": `${fake.apiUrl}/users/${encodeURIComponent(upn)}/messages?${q("$filter", url.searchParams.get("$filter")!)}&${q("$select", select.join(","))}&$skip=${skip + fake.pageSize}` } : {}),
      },
    };
  };

  const http = await startFakeHttp((req, url, body) => {
    const token = /^\/([^/]+)\/oauth2\/v2\.0\/token$/.exec(url.pathname);
    if (token && req.method === "POST") return tokenEndpoint(decodeURIComponent(token[1]!), body);
    return api(req.method ?? "GET", url, bearerOf(req));
  });
  const fake: FakeGraph = Object.assign(http, {
    tenantId,
    clientId,
    clientSecret,
    loginUrl: http.origin,
    apiUrl: `${http.origin}/v1.0`,
    pageSize: 10,
    permissions: new Set(["Mail.ReadWrite"]),
    accessPolicy: undefined,
    tokensIssued: () => issued,
    revokeTokens: () => tokens.clear(),
    put(upn: string, ids: Array<string | null>, folder = "inbox") {
      const box = mailboxes.get(upn) ?? [];
      mailboxes.set(upn, box);
      // Graph ids are long base64url strings ending in `=`; a `-` and a `_` make a path that must be encoded as it is.
      const added = ids.map((internetMessageId) => ({ id: `AAMkAD-${++serial}_${randomBytes(6).toString("base64url")}=`, internetMessageId, parentFolderId: folder }));
      box.push(...added);
      return added.map((x) => x.id);
    },
    messages: (upn: string) => [...(mailboxes.get(upn) ?? [])],
  });
  return fake;
}
