/**
 * The Microsoft Graph purge connector: removes a recalled message from one recipient's Microsoft
 * 365 mailbox with an application permission (no user signs in). The contract is connector.ts's.
 *
 * One purge: an app-only token (client credentials, cached for all mailboxes until shortly before
 * it expires), `GET /users/{upn}/messages?$filter=internetMessageId eq '<id>'` over every page
 * (`@odata.nextLink`), each hit's own `internetMessageId` compared exactly, then
 * `DELETE /users/{upn}/messages/{id}` for each exact one (Exchange moves it to the mailbox's
 * Recoverable Items, where the user cannot see it and a compliance admin still can).
 *
 * Deleting nothing else rests on three rules:
 * - Only hits whose own `internetMessageId` is exactly the one asked for are deleted (Exchange
 *   compares the filter without regard to case).
 * - Every page is read before anything is deleted: a `$skip`-style next link counts positions in
 *   the result, which a deletion shifts, so deleting while paging could skip a copy.
 * - Only `/users/{upn}/…` of the recipient is asked (the address refused if it carries URL
 *   syntax), and a next link is followed only to the API's own origin (it carries the token).
 *
 * The permission the app needs is `Mail.ReadWrite` (application, admin-consented); an Exchange
 * application access policy may narrow it to the mailboxes Airlock mails (README, "Purge connectors").
 */
import { PurgeSlots, purgeInSlot } from "./slots.js";
import { isValidMessageId, type PurgeConnector, type PurgeResult } from "./connector.js";
import {
  DEFAULT_HTTP_RETRY,
  DEFAULT_HTTP_TIMEOUTS,
  exchange,
  isPlainAddress,
  PurgeFailure,
  realSleep,
  tokenUsableUntil,
  type HttpAnswer,
  type HttpConnectorOptions,
  type HttpPurgeTimeouts,
  type HttpRetry,
  type Sleep,
  untilAborted,
} from "./http-purge.js";

export interface GraphPurgeSettings extends HttpConnectorOptions {
  /** The Microsoft Entra tenant: its id (a GUID) or a verified domain (`corp.example`). */
  tenantId: string;
  /** The app registration's application (client) id. */
  clientId: string;
  /** A client secret of that app registration. */
  clientSecret: string;
  /** Where tokens come from; default `https://login.microsoftonline.com` (national clouds have their own). */
  loginUrl?: string;
  /** Microsoft Graph with its version; default `https://graph.microsoft.com/v1.0`. */
  apiUrl?: string;
  // concurrency (Exchange allows 4 concurrent requests per app and mailbox; these are different
  // mailboxes), timeouts, retry, sleep, now, log: HttpConnectorOptions.
}

const DEFAULT_LOGIN_URL = "https://login.microsoftonline.com";
const DEFAULT_API_URL = "https://graph.microsoft.com/v1.0";
const SCOPE = "https://graph.microsoft.com/.default";
/** A search for one Message-ID that is still paging after this many pages is not a search Airlock asked for. */
const MAX_PAGES = 50;
const PERMISSION_HINT = "the app needs the Mail.ReadWrite application permission (Application, not Delegated) with admin consent";

interface Hit {
  id: string;
  internetMessageId: string | null;
  parentFolderId?: string;
}

export class GraphPurgeConnector implements PurgeConnector {
  private readonly slots: PurgeSlots;
  private readonly timeouts: HttpPurgeTimeouts;
  private readonly retry: HttpRetry;
  private readonly loginUrl: string;
  private readonly apiUrl: string;
  private readonly sleep: Sleep;
  private readonly now: () => number;
  private token: { value: string; until: number } | undefined;
  private pendingToken: Promise<string> | undefined;

  constructor(private readonly settings: GraphPurgeSettings) {
    this.slots = new PurgeSlots(Math.max(1, settings.concurrency ?? 4));
    this.timeouts = { ...DEFAULT_HTTP_TIMEOUTS, ...settings.timeouts };
    this.retry = { ...DEFAULT_HTTP_RETRY, ...settings.retry };
    this.loginUrl = (settings.loginUrl ?? DEFAULT_LOGIN_URL).replace(/\/+$/, "");
    this.apiUrl = (settings.apiUrl ?? DEFAULT_API_URL).replace(/\/+$/, "");
    this.sleep = settings.sleep ?? realSleep;
    this.now = settings.now ?? Date.now;
  }

  async purge(mailbox: string, messageId: string): Promise<PurgeResult> {
    const refused = checkInput(mailbox, messageId);
    if (refused) return refused;
    return purgeInSlot(this.slots, "graph", this.settings.log, mailbox, messageId, () => this.purgeOne(mailbox, messageId));
  }

  close(): Promise<void> {
    return this.slots.close();
  }

  private async purgeOne(upn: string, messageId: string): Promise<PurgeResult> {
    const signal = AbortSignal.timeout(this.timeouts.purgeMs);
    const progress = { removed: 0, folders: new Set<string>() };
    try {
      const hits = await this.find(upn, messageId, signal);
      // Exchange's `eq` ignores case: only a copy whose own Message-ID is exactly the one asked for is the message.
      const exact = hits.filter((h) => typeof h.internetMessageId === "string" && h.internetMessageId.trim() === messageId);
      for (const hit of exact) {
        const answer = await this.call("DELETE", `${this.user(upn)}/messages/${encodeURIComponent(hit.id)}`, signal, `deleting a copy from ${upn}'s mailbox`);
        // 404: the copy found a moment ago is gone already (a duplicate purge running at the same
        // time, or this one's earlier attempt whose answer was lost): it was the message, and it is out.
        if (answer.status !== 204 && answer.status !== 200 && answer.status !== 404) throw this.failure(answer, upn, `deleting a copy from ${upn}'s mailbox`);
        progress.removed++;
        progress.folders.add(hit.parentFolderId ?? "mailbox");
      }
    } catch (err) {
      const failure = err instanceof PurgeFailure ? err : new PurgeFailure(`unexpected: ${String(err)}`.slice(0, 500), true);
      const done = progress.removed > 0 ? ` (${progress.removed} cop${progress.removed === 1 ? "y" : "ies"} already removed)` : "";
      return { outcome: "failed", reason: failure.reason + done, retry: failure.retry };
    }
    return progress.removed > 0 ? { outcome: "purged", removed: progress.removed, folders: [...progress.folders] } : { outcome: "not_found" };
  }

  /** Every message of the mailbox Graph returns for the filter, all pages read. */
  private async find(upn: string, messageId: string, signal: AbortSignal): Promise<Hit[]> {
    // OData string literal: single quotes doubled; then the whole filter percent-encoded (a
    // Message-ID may hold `+`, `&`, `#`, `'` and `=`, each meaningful in a query string).
    const filter = `internetMessageId eq '${messageId.replaceAll("'", "''")}'`;
    let url: string | undefined = `${this.user(upn)}/messages?$filter=${encodeQueryValue(filter)}&$select=id,internetMessageId,parentFolderId`;
    const hits: Hit[] = [];
    const what = `searching ${upn}'s mailbox`;
    for (let page = 0; url; page++) {
      if (page >= MAX_PAGES) throw new PurgeFailure(`${what}: still paging after ${MAX_PAGES} pages`, false);
      const answer = await this.call("GET", url, signal, what);
      if (answer.status !== 200) throw this.failure(answer, upn, what);
      const body = answer.json as { value?: unknown; "@odata.nextLink"?: unknown } | undefined;
      if (!body || !Array.isArray(body.value)) throw new PurgeFailure(`${what}: an answer without a value list: ${answer.text.slice(0, 200)}`, true);
      for (const v of body.value as Hit[]) if (v && typeof v.id === "string") hits.push(v);
      const next = body["@odata.nextLink"];
      if (next === undefined || next === null) break;
      const nextUrl = typeof next === "string" && URL.canParse(next, this.apiUrl) ? new URL(next, this.apiUrl) : undefined;
      if (!nextUrl || nextUrl.origin !== new URL(this.apiUrl).origin) {
        throw new PurgeFailure(`${what}: a next link outside ${new URL(this.apiUrl).origin} (${String(next).slice(0, 200)}): not followed`, false);
      }
      url = nextUrl.href;
    }
    return hits;
  }

  private user(upn: string): string {
    return `${this.apiUrl}/users/${encodeURIComponent(upn)}`;
  }

  /**
   * One Graph request with the app's token. A 401 with a cached token is asked once more with a
   * fresh one (a token revoked or expired early by clock skew); a second 401 is the answer.
   */
  private async call(method: string, url: string, signal: AbortSignal, what: string): Promise<HttpAnswer> {
    for (let fresh = false; ; fresh = true) {
      const token = await this.accessToken(signal, fresh);
      const answer = await exchange(url, { method, headers: { authorization: `Bearer ${token}`, accept: "application/json" } }, {
        signal,
        timeouts: this.timeouts,
        retry: this.retry,
        sleep: this.sleep,
        what,
        // Graph's throttling (429) and an Exchange backend busy or failing over (503, 504) name
        // their Retry-After and pass; anything else will not change by asking again now.
        retryable: (a) => a.status === 429 || a.status === 503 || a.status === 504,
      });
      if (answer.status !== 401 || fresh) return answer;
      if (this.token?.value === token) this.token = undefined;
    }
  }

  /** The cached app token, or a new one (one request at a time for all purges). */
  private async accessToken(signal: AbortSignal, renew: boolean): Promise<string> {
    if (!renew && this.token && this.now() < this.token.until) return this.token.value;
    if (renew) this.token = undefined;
    this.pendingToken ??= this.requestToken().finally(() => (this.pendingToken = undefined));
    return untilAborted(this.pendingToken, signal, () => new PurgeFailure(`requesting a Graph token: gave up after ${this.timeouts.purgeMs} ms`, true));
  }

  private async requestToken(): Promise<string> {
    const s = this.settings;
    const what = `requesting a Graph token for app ${s.clientId} in tenant ${s.tenantId}`;
    const body = new URLSearchParams({ client_id: s.clientId, client_secret: s.clientSecret, scope: SCOPE, grant_type: "client_credentials" });
    const answer = await exchange(`${this.loginUrl}/${encodeURIComponent(s.tenantId)}/oauth2/v2.0/token`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body }, {
      // Its own deadline: the token serves every purge waiting for it, not only the one that asked.
      signal: AbortSignal.timeout(this.timeouts.purgeMs),
      timeouts: this.timeouts,
      retry: this.retry,
      sleep: this.sleep,
      what,
      // Entra ID throttles (429) and has outages (5xx) like any service; a refusal (400/401) is final.
      retryable: (a) => a.status === 429 || a.status >= 500,
    });
    const json = (answer.json ?? {}) as { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown };
    if (answer.status === 200 && typeof json.access_token === "string") {
      const expiresIn = Number(json.expires_in);
      this.token = { value: json.access_token, until: tokenUsableUntil(this.now(), Number.isFinite(expiresIn) ? expiresIn : 0) };
      return json.access_token;
    }
    const said = typeof json.error === "string" ? `${json.error}: ${firstLine(json.error_description)}` : answer.text.slice(0, 200);
    const hint =
      json.error === "invalid_client"
        ? ": check the client secret (wrong or expired) and the client id"
        : json.error === "unauthorized_client"
          ? ": the app is not registered in this tenant, or disabled"
          : json.error === "invalid_request"
            ? ": check the tenant id"
            : "";
    throw new PurgeFailure(`${what} was refused (${answer.status} ${said})${hint}`, answer.status === 429 || answer.status >= 500);
  }

  /** The failure a Graph error answer means. */
  private failure(a: HttpAnswer, upn: string, what: string): PurgeFailure {
    const err = (a.json as { error?: { code?: unknown; message?: unknown } } | undefined)?.error;
    const said = `${a.status}${typeof err?.code === "string" ? ` ${err.code}` : ""}: ${typeof err?.message === "string" ? err.message : a.text}`.slice(0, 300);
    if (a.status === 401) return new PurgeFailure(`${what}: Microsoft Graph refused the app's token (${said}); ${PERMISSION_HINT}`, false);
    if (a.status === 403) {
      return new PurgeFailure(`${what}: Microsoft Graph denied access to ${upn}'s mailbox (${said}); ${PERMISSION_HINT}, and ${upn} within its application access policy if one restricts it`, false);
    }
    // On the search, a 404 is the user (ErrorInvalidUser, ResourceNotFound) or a user without an
    // Exchange Online mailbox (MailboxNotEnabledForRESTAPI): asking again changes nothing.
    if (a.status === 404) return new PurgeFailure(`${what}: no mailbox ${upn} in Microsoft 365 (${said})`, false);
    if (a.status === 429 || a.status >= 500) return new PurgeFailure(`${what}: ${said}`, true);
    return new PurgeFailure(`${what}: ${said}`, false);
  }
}

function checkInput(mailbox: string, messageId: string): PurgeResult | null {
  if (!isValidMessageId(messageId)) return { outcome: "failed", reason: `not a Message-ID: ${JSON.stringify(messageId.slice(0, 200))}`, retry: false };
  if (!isPlainAddress(mailbox)) return { outcome: "failed", reason: `mailbox ${JSON.stringify(mailbox.slice(0, 200))} is not an address Graph can name (one local@domain, no spaces or URL syntax)`, retry: false };
  return null;
}

/** encodeURIComponent, plus the characters it leaves alone that RFC 3986 reserves (`'` among them, OData's quote). */
function encodeQueryValue(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function firstLine(v: unknown): string {
  return typeof v === "string" ? v.split(/\r?\n/)[0]!.slice(0, 300) : "";
}
