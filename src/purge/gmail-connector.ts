/**
 * The Gmail purge connector: removes a recalled message from one recipient's Google Workspace
 * mailbox through the Gmail API, as that user, by domain-wide delegation to a service account.
 * The contract is connector.ts's.
 *
 * One purge: a token for the recipient (a JWT signed RS256 with the service account's key, `sub`
 * the recipient, exchanged at the key's `token_uri`; cached per user until shortly before it
 * expires), `GET /gmail/v1/users/{user}/messages?q=rfc822msgid:…&includeSpamTrash=true` over
 * every page (`nextPageToken`), each hit's own `Message-ID` header fetched
 * (`format=metadata&metadataHeaders=Message-ID`) and compared exactly (`sameMessageId`), then
 * `POST …/messages/{id}/trash` (mode `trash`: the user may still see it in Trash for 30 days, an
 * admin can restore it) or `DELETE …/messages/{id}` (mode `delete`: gone at once, needs the full
 * `https://mail.google.com/` scope).
 *
 * Deleting nothing else rests on three rules:
 * - Only messages whose own Message-ID header is exactly the one asked for are touched: Gmail's
 *   `rfc822msgid:` ignores case, and its query syntax is not a literal match.
 * - Every page is read before anything is removed, so that a removal cannot shift a page.
 * - The token is the recipient's own (`sub`), so the API cannot reach another mailbox even if
 *   the path named one; and the path names the recipient, so a token cached for another user
 *   is refused by Google rather than used.
 * In mode `trash`, a copy already in Trash is left as it is (a second purge answers `not_found`).
 */
import { PurgeSlots, purgeInSlot } from "./slots.js";
import { createPrivateKey, sign, type KeyObject } from "node:crypto";
import { isValidMessageId, sameMessageId, type PurgeConnector, type PurgeResult } from "./connector.js";
import {
  DEFAULT_HTTP_RETRY,
  DEFAULT_HTTP_TIMEOUTS,
  exchange,
  isPlainAddress,
  PurgeFailure,
  realSleep,
  tokenUsableUntil,
  untilAborted,
  type HttpAnswer,
  type HttpConnectorOptions,
  type HttpPurgeTimeouts,
  type HttpRetry,
  type Sleep,
} from "./http-purge.js";

/** The fields of a service account's JSON key this connector uses. */
export interface GoogleServiceAccount {
  client_email: string;
  /** PEM, PKCS#8 (`-----BEGIN PRIVATE KEY-----`), as Google issues it. */
  private_key: string;
  /** Google's token endpoint, `https://oauth2.googleapis.com/token`. */
  token_uri: string;
  /** The numeric client id the Admin console's domain-wide delegation lists; only for failure reasons. */
  client_id?: string;
}

export interface GmailPurgeSettings extends HttpConnectorOptions {
  serviceAccount: GoogleServiceAccount;
  /** `trash` (recoverable for 30 days; scope gmail.modify) or `delete` (permanent; scope https://mail.google.com/). */
  mode: "trash" | "delete";
  /** The Gmail API; default `https://gmail.googleapis.com`. */
  apiUrl?: string;
  /** Users whose tokens are kept, default 10,000 (the oldest goes first): a recall of a million recipients must not hold a million tokens. */
  tokenCacheSize?: number;
  // concurrency, timeouts, retry, sleep, now (also the JWT's times), log: HttpConnectorOptions.
}

export const GMAIL_SCOPES = { trash: "https://www.googleapis.com/auth/gmail.modify", delete: "https://mail.google.com/" } as const;
const DEFAULT_API_URL = "https://gmail.googleapis.com";
/** A search for one Message-ID that is still paging after this many pages (of 100) is not a search Airlock asked for. */
const MAX_PAGES = 50;
/** Labels that are not where a message is (read state, stars, tabs): left out of the folders a purge reports. */
const NOT_A_PLACE = /^(UNREAD|STARRED|IMPORTANT|CATEGORY_.*)$/;

interface GmailMessage {
  id?: string;
  labelIds?: string[];
  payload?: { headers?: Array<{ name?: string; value?: string }> };
}

export class GmailPurgeConnector implements PurgeConnector {
  private readonly slots: PurgeSlots;
  private readonly timeouts: HttpPurgeTimeouts;
  private readonly retry: HttpRetry;
  private readonly apiUrl: string;
  private readonly scope: string;
  private readonly sleep: Sleep;
  private readonly now: () => number;
  private readonly tokens = new Map<string, { value: string; until: number }>();
  private readonly pendingTokens = new Map<string, Promise<string>>();
  private key: KeyObject | undefined;
  private keyProblem: string | undefined;

  constructor(private readonly settings: GmailPurgeSettings) {
    this.slots = new PurgeSlots(Math.max(1, settings.concurrency ?? 4));
    this.timeouts = { ...DEFAULT_HTTP_TIMEOUTS, ...settings.timeouts };
    this.retry = { ...DEFAULT_HTTP_RETRY, ...settings.retry };
    this.apiUrl = (settings.apiUrl ?? DEFAULT_API_URL).replace(/\/+$/, "");
    this.scope = GMAIL_SCOPES[settings.mode];
    this.sleep = settings.sleep ?? realSleep;
    this.now = settings.now ?? Date.now;
    try {
      this.key = createPrivateKey(settings.serviceAccount.private_key);
    } catch (err) {
      // purge-settings.ts checks the key at start; a connector built otherwise fails each purge instead of throwing here.
      this.keyProblem = `the private key of service account ${settings.serviceAccount.client_email} cannot be read: ${(err as Error).message}`;
    }
  }

  async purge(mailbox: string, messageId: string): Promise<PurgeResult> {
    const refused = this.checkInput(mailbox, messageId);
    if (refused) return refused;
    return purgeInSlot(this.slots, "gmail", this.settings.log, mailbox, messageId, () => this.purgeOne(mailbox, messageId));
  }

  close(): Promise<void> {
    return this.slots.close();
  }

  private checkInput(mailbox: string, messageId: string): PurgeResult | null {
    if (this.keyProblem) return { outcome: "failed", reason: this.keyProblem, retry: false };
    if (!isValidMessageId(messageId)) return { outcome: "failed", reason: `not a Message-ID: ${JSON.stringify(messageId.slice(0, 200))}`, retry: false };
    // Gmail's query language gives quotes, parentheses and braces a meaning; a Message-ID holding
    // one could be searched as something else and never found. Saying so beats a `not_found`
    // retried for half an hour. (Airlock's own Message-IDs hold none of them.)
    if (/["(){}]/.test(messageId)) return { outcome: "failed", reason: `Message-ID ${messageId.slice(0, 200)} holds a character Gmail's search treats as syntax ("(){}): it cannot be searched for exactly`, retry: false };
    if (!isPlainAddress(mailbox)) return { outcome: "failed", reason: `mailbox ${JSON.stringify(mailbox.slice(0, 200))} is not an address Gmail can name (one local@domain, no spaces or URL syntax)`, retry: false };
    return null;
  }

  private async purgeOne(user: string, messageId: string): Promise<PurgeResult> {
    const signal = AbortSignal.timeout(this.timeouts.purgeMs);
    const progress = { removed: 0, folders: new Set<string>() };
    try {
      const ids = await this.find(user, messageId, signal);
      for (const id of ids) {
        const message = await this.metadata(user, id, signal);
        if (!message || !sameMessageId(headerBlock(message), messageId)) continue;
        const labels = message.labelIds ?? [];
        if (this.settings.mode === "trash" && labels.includes("TRASH")) continue; // trashed already: by an earlier purge, or by its user
        const path = `${this.user(user)}/messages/${encodeURIComponent(id)}`;
        const what = `${this.settings.mode === "trash" ? "trashing" : "deleting"} a copy in ${user}'s mailbox`;
        const answer = this.settings.mode === "trash" ? await this.call(user, "POST", `${path}/trash`, signal, what) : await this.call(user, "DELETE", path, signal, what);
        // 404: the copy found a moment ago is gone already (a duplicate purge at the same time, or
        // this one's earlier attempt whose answer was lost): it was the message, and it is out.
        if (answer.status !== 200 && answer.status !== 204 && answer.status !== 404) throw this.failure(answer, user, what);
        progress.removed++;
        const places = labels.filter((l) => !NOT_A_PLACE.test(l));
        for (const place of places.length ? places : ["All Mail"]) progress.folders.add(place);
      }
    } catch (err) {
      const failure = err instanceof PurgeFailure ? err : new PurgeFailure(`unexpected: ${String(err)}`.slice(0, 500), true);
      const done = progress.removed > 0 ? ` (${progress.removed} cop${progress.removed === 1 ? "y" : "ies"} already removed)` : "";
      return { outcome: "failed", reason: failure.reason + done, retry: failure.retry };
    }
    return progress.removed > 0 ? { outcome: "purged", removed: progress.removed, folders: [...progress.folders] } : { outcome: "not_found" };
  }

  /** The ids of every message Gmail's search returns, all pages read, Spam and Trash included. */
  private async find(user: string, messageId: string, signal: AbortSignal): Promise<string[]> {
    // Without the angle brackets: Gmail's documented form (`rfc822msgid:200503292@example.com`).
    const q = encodeURIComponent(`rfc822msgid:${messageId.slice(1, -1)}`);
    const ids = new Set<string>();
    const what = `searching ${user}'s mailbox`;
    let pageToken: string | undefined;
    for (let page = 0; ; page++) {
      if (page >= MAX_PAGES) throw new PurgeFailure(`${what}: still paging after ${MAX_PAGES} pages`, false);
      const url = `${this.user(user)}/messages?q=${q}&includeSpamTrash=true&maxResults=100${pageToken ? `&pageToken=${encodeURIComponent(pageToken)}` : ""}`;
      const answer = await this.call(user, "GET", url, signal, what);
      if (answer.status !== 200) throw this.failure(answer, user, what);
      const body = (answer.json ?? {}) as { messages?: unknown; nextPageToken?: unknown };
      if (body.messages !== undefined && !Array.isArray(body.messages)) throw new PurgeFailure(`${what}: an answer without a message list: ${answer.text.slice(0, 200)}`, true);
      for (const m of (body.messages ?? []) as Array<{ id?: unknown }>) if (m && typeof m.id === "string") ids.add(m.id);
      if (typeof body.nextPageToken !== "string" || body.nextPageToken === "") return [...ids];
      pageToken = body.nextPageToken;
    }
  }

  /** A message's labels and Message-ID headers; undefined when it is gone since the search. */
  private async metadata(user: string, id: string, signal: AbortSignal): Promise<GmailMessage | undefined> {
    const what = `reading a message's Message-ID in ${user}'s mailbox`;
    const answer = await this.call(user, "GET", `${this.user(user)}/messages/${encodeURIComponent(id)}?format=metadata&metadataHeaders=Message-ID`, signal, what);
    if (answer.status === 404) return undefined;
    if (answer.status !== 200) throw this.failure(answer, user, what);
    return (answer.json ?? {}) as GmailMessage;
  }

  private user(user: string): string {
    return `${this.apiUrl}/gmail/v1/users/${encodeURIComponent(user)}`;
  }

  /**
   * One Gmail request with the user's token. A 401 with a cached token is asked once more with a
   * fresh one (a token revoked, or expired early by clock skew); a second 401 is the answer.
   */
  private async call(user: string, method: string, url: string, signal: AbortSignal, what: string): Promise<HttpAnswer> {
    for (let fresh = false; ; fresh = true) {
      const token = await this.accessToken(user, signal, fresh);
      const answer = await exchange(url, { method, headers: { authorization: `Bearer ${token}`, accept: "application/json" } }, {
        signal,
        timeouts: this.timeouts,
        retry: this.retry,
        sleep: this.sleep,
        what,
        // Google's quota answers (429, or 403 rateLimitExceeded / userRateLimitExceeded, which
        // its documentation says to treat alike) and backend errors (5xx) pass with backoff.
        retryable: (a) => a.status === 429 || a.status >= 500 || isRateLimit(a),
      });
      if (answer.status !== 401 || fresh) return answer;
      if (this.tokens.get(user)?.value === token) this.tokens.delete(user);
    }
  }

  /** The user's cached token, or a new one (one request at a time per user). */
  private accessToken(user: string, signal: AbortSignal, renew: boolean): Promise<string> {
    const cached = this.tokens.get(user);
    if (!renew && cached && this.now() < cached.until) return Promise.resolve(cached.value);
    if (renew) this.tokens.delete(user);
    let pending = this.pendingTokens.get(user);
    if (!pending) {
      pending = this.requestToken(user).finally(() => this.pendingTokens.delete(user));
      this.pendingTokens.set(user, pending);
    }
    return untilAborted(pending, signal, () => new PurgeFailure(`requesting a Gmail token for ${user}: gave up after ${this.timeouts.purgeMs} ms`, true));
  }

  private async requestToken(user: string): Promise<string> {
    const sa = this.settings.serviceAccount;
    const what = `requesting a token for ${user} from ${sa.token_uri}`;
    const assertion = this.assertion(user);
    const body = new URLSearchParams({ grant_type: "urn:ietf:params:oauth:grant-type:jwt-bearer", assertion });
    const answer = await exchange(sa.token_uri, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body }, {
      // Its own deadline: the token may serve other purges of the same user, not only the one that asked.
      signal: AbortSignal.timeout(this.timeouts.purgeMs),
      timeouts: this.timeouts,
      retry: this.retry,
      sleep: this.sleep,
      what,
      // Google's token endpoint throttles (429) and fails (5xx) like any service; a refusal (400/401) is final.
      retryable: (a) => a.status === 429 || a.status >= 500,
    });
    const json = (answer.json ?? {}) as { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown };
    if (answer.status === 200 && typeof json.access_token === "string") {
      const expiresIn = Number(json.expires_in);
      this.tokens.delete(user); // re-inserted last: the oldest entry is the first in the map
      this.tokens.set(user, { value: json.access_token, until: tokenUsableUntil(this.now(), Number.isFinite(expiresIn) ? expiresIn : 0) });
      const cap = Math.max(1, this.settings.tokenCacheSize ?? 10_000);
      for (const oldest of this.tokens.keys()) {
        if (this.tokens.size <= cap) break;
        this.tokens.delete(oldest);
      }
      return json.access_token;
    }
    const description = typeof json.error_description === "string" ? json.error_description.slice(0, 300) : "";
    const said = `${answer.status}${typeof json.error === "string" ? ` ${json.error}` : ""}: ${description || answer.text.slice(0, 200)}`;
    if (json.error === "unauthorized_client") {
      const client = sa.client_id ? `client id ${sa.client_id} (${sa.client_email})` : sa.client_email;
      throw new PurgeFailure(
        `${what} was refused (${said}): domain-wide delegation is not set up for this scope: in the Google Admin console (Security > API controls > Domain-wide delegation) give ${client} the scope ${this.scope}`,
        false,
      );
    }
    // Google answers a `sub` it does not know (or a suspended user) with invalid_grant "Invalid email or User ID".
    if (json.error === "invalid_grant" && /invalid email or user id/i.test(description)) throw new PurgeFailure(`no Google Workspace user ${user} (${said})`, false);
    if (json.error === "invalid_client" || json.error === "invalid_grant") {
      throw new PurgeFailure(`${what} was refused (${said}): check the service account key (deleted or disabled?) and this host's clock`, false);
    }
    throw new PurgeFailure(`${what} was refused (${said})`, answer.status === 429 || answer.status >= 500);
  }

  /** The JWT asserting the service account acts as `user` with the mode's scope (RFC 7523, Google's "Using OAuth 2.0 for Server to Server Applications"). */
  private assertion(user: string): string {
    const sa = this.settings.serviceAccount;
    const iat = Math.floor(this.now() / 1000);
    const part = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
    const unsigned = `${part({ alg: "RS256", typ: "JWT" })}.${part({ iss: sa.client_email, sub: user, scope: this.scope, aud: sa.token_uri, iat, exp: iat + 3600 })}`;
    return `${unsigned}.${sign("RSA-SHA256", Buffer.from(unsigned), this.key!).toString("base64url")}`;
  }

  /** The failure a Gmail error answer means. */
  private failure(a: HttpAnswer, user: string, what: string): PurgeFailure {
    const err = (a.json as { error?: { message?: unknown; status?: unknown } } | undefined)?.error;
    const said = `${a.status}${typeof err?.status === "string" ? ` ${err.status}` : ""}: ${typeof err?.message === "string" ? err.message : a.text}`.slice(0, 300);
    const reasons = errorReasons(a);
    if (a.status === 401) return new PurgeFailure(`${what}: Gmail refused the token for ${user} (${said})`, false);
    if (a.status === 403 && !isRateLimit(a)) {
      return new PurgeFailure(`${what}: Gmail denied it (${said}): the service account needs the scope ${this.scope} by domain-wide delegation`, false);
    }
    // 404 on the search: no such user. 400 failedPrecondition: a user without Gmail ("Mail service
    // not enabled"). Asking again changes nothing.
    if (a.status === 404 || (a.status === 400 && reasons.includes("failedPrecondition"))) return new PurgeFailure(`${what}: no Gmail mailbox ${user} (${said})`, false);
    if (a.status === 429 || a.status >= 500 || isRateLimit(a)) return new PurgeFailure(`${what}: ${said}`, true);
    return new PurgeFailure(`${what}: ${said}`, false);
  }
}

/** The Message-ID headers Gmail returned, as a header block for sameMessageId; none at all when a value holds a line break (it could forge a second field). */
function headerBlock(m: GmailMessage): string {
  const values = (m.payload?.headers ?? []).filter((h) => typeof h.name === "string" && h.name.toLowerCase() === "message-id").map((h) => String(h.value ?? ""));
  return values.some((v) => /[\r\n]/.test(v)) ? "" : values.map((v) => `Message-ID: ${v}`).join("\r\n");
}

function errorReasons(a: HttpAnswer): string[] {
  const errors = (a.json as { error?: { errors?: Array<{ reason?: unknown }> } } | undefined)?.error?.errors;
  return Array.isArray(errors) ? errors.map((e) => String(e?.reason ?? "")) : [];
}

function isRateLimit(a: HttpAnswer): boolean {
  return a.status === 403 && errorReasons(a).some((r) => r === "rateLimitExceeded" || r === "userRateLimitExceeded");
}
