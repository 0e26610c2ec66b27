/**
 * The OpenID Connect relying party, on openid-client 6: discovery, the authorization URL (code
 * flow, PKCE S256, state, nonce), the code grant and the refresh-token grant. Every check of the
 * answer (state, RFC 9207 `iss` parameter, ID token signature, issuer, audience, nonce, expiry) is
 * openid-client's; this module only sorts its errors into what a person is told (`OidcFailure`).
 *
 * Time comes from Airlock's clock (openid-client's `clockSkew`), so tests can age an ID token.
 */
import * as oidc from "openid-client";
import type { Clock } from "../domain/clock.js";
import type { OidcSettings } from "../config.js";

/** Why a sign-in step failed, sorted for the page: the provider refused, the answer did not verify, or it cannot be reached. */
export class OidcFailure extends Error {
  constructor(
    readonly kind: "provider_error" | "access_denied" | "invalid_response" | "unreachable",
    message: string,
    /** The provider's or openid-client's code (`invalid_grant`, `OAUTH_JWT_TIMESTAMP_CHECK_FAILED`, …), for the log and the audit. */
    readonly code: string,
  ) {
    super(message);
    this.name = "OidcFailure";
  }
}

export interface AuthorizationRequest {
  url: URL;
  state: string;
  nonce: string;
  codeVerifier: string;
}

/** The tokens of a grant: the ID token's claims (verified) and what the re-check needs later. */
export interface GrantResult {
  claims: Record<string, unknown>;
  accessToken: string;
  refreshToken: string | null;
}

/** Discovery and each grant give up after this long: a person is waiting for the page. */
const PROVIDER_TIMEOUT_SECONDS = 10;

export class OidcClient {
  private discovered: Promise<oidc.Configuration> | null = null;
  /** The configuration for the current clock skew (one in production: the skew is 0). */
  private current: { skew: number; config: oidc.Configuration } | null = null;

  constructor(
    private readonly settings: OidcSettings,
    private readonly clientSecret: string,
    private readonly clock: Clock,
  ) {}

  /** Discovery, once; a failed one is tried again at the next sign-in (the provider may have been down). */
  private async configuration(): Promise<oidc.Configuration> {
    this.discovered ??= oidc
      .discovery(new URL(this.settings.issuer), this.settings.clientId, this.clientSecret, oidc.ClientSecretPost(this.clientSecret), {
        timeout: PROVIDER_TIMEOUT_SECONDS,
        // http:// issuers only reach here outside production (config.ts refuses them there).
        ...(this.settings.issuer.startsWith("http:") ? { execute: [oidc.allowInsecureRequests] } : {}),
      })
      .catch((e: unknown) => {
        this.discovered = null;
        throw e;
      });
    const base = await this.discovered;
    const skew = Math.round((this.clock.now() - Date.now()) / 1000);
    if (skew === 0) return base;
    if (this.current?.skew !== skew) {
      const config = new oidc.Configuration(base.serverMetadata(), this.settings.clientId, { client_secret: this.clientSecret, [oidc.clockSkew]: skew }, oidc.ClientSecretPost(this.clientSecret));
      if (this.settings.issuer.startsWith("http:")) oidc.allowInsecureRequests(config);
      config.timeout = PROVIDER_TIMEOUT_SECONDS;
      this.current = { skew, config };
    }
    return this.current.config;
  }

  /** Checks that discovery works (at start, for the log: a failure there is not fatal). */
  async check(): Promise<void> {
    await classified(() => this.configuration());
  }

  async authorizationRequest(): Promise<AuthorizationRequest> {
    return classified(async () => {
      const config = await this.configuration();
      const codeVerifier = oidc.randomPKCECodeVerifier();
      const state = oidc.randomState();
      const nonce = oidc.randomNonce();
      const url = oidc.buildAuthorizationUrl(config, {
        redirect_uri: this.settings.redirectUrl,
        scope: this.settings.scopes,
        code_challenge: await oidc.calculatePKCECodeChallenge(codeVerifier),
        code_challenge_method: "S256",
        state,
        nonce,
      });
      return { url, state, nonce, codeVerifier };
    });
  }

  /**
   * The code grant for the callback URL the browser brought back, checked against the request this
   * browser started. The URL is rebuilt on OIDC_REDIRECT_URL (its query from the request), so a
   * proxy's host name does not matter.
   */
  async completeAuthorization(query: string, expected: Pick<AuthorizationRequest, "state" | "nonce" | "codeVerifier">): Promise<GrantResult> {
    return classified(async () => {
      const config = await this.configuration();
      const callback = new URL(this.settings.redirectUrl);
      callback.search = query;
      const tokens = await oidc.authorizationCodeGrant(config, callback, {
        pkceCodeVerifier: expected.codeVerifier,
        expectedState: expected.state,
        expectedNonce: expected.nonce,
        idTokenExpected: true,
      });
      return this.result(config, tokens, null, null);
    });
  }

  /**
   * The re-check: a refresh-token grant, its new ID token's claims (or, when the provider sends
   * none on refresh, the userinfo of the new access token, bound to the same subject).
   */
  async refresh(refreshToken: string, subject: string): Promise<GrantResult> {
    return classified(async () => {
      const config = await this.configuration();
      const tokens = await oidc.refreshTokenGrant(config, refreshToken);
      return this.result(config, tokens, subject, refreshToken);
    });
  }

  private async result(config: oidc.Configuration, tokens: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers, subject: string | null, previousRefresh: string | null): Promise<GrantResult> {
    let claims = tokens.claims() as Record<string, unknown> | undefined;
    if (claims && subject !== null && claims.sub !== subject) throw new OidcFailure("invalid_response", "the provider answered for another person", "subject_changed");
    if (!claims) {
      if (subject === null) throw new OidcFailure("invalid_response", "the provider sent no ID token", "no_id_token");
      claims = { ...(await oidc.fetchUserInfo(config, tokens.access_token, subject)), iss: config.serverMetadata().issuer };
    }
    return { claims, accessToken: tokens.access_token, refreshToken: tokens.refresh_token ?? previousRefresh };
  }

  /** Userinfo for claims the ID token left out (some providers put groups only there). */
  async userinfo(accessToken: string, subject: string): Promise<Record<string, unknown>> {
    return classified(async () => ({ ...(await oidc.fetchUserInfo(await this.configuration(), accessToken, subject)) }));
  }
}

/** Runs a step and turns whatever it throws into an OidcFailure. */
async function classified<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    throw classify(e);
  }
}

export function classify(e: unknown): OidcFailure {
  if (e instanceof OidcFailure) return e;
  if (e instanceof oidc.AuthorizationResponseError) {
    return new OidcFailure(e.error === "access_denied" ? "access_denied" : "provider_error", e.error_description ?? e.error, e.error);
  }
  if (e instanceof oidc.ResponseBodyError) {
    return e.status >= 500 ? new OidcFailure("unreachable", `the provider answered ${e.status}`, e.error) : new OidcFailure("provider_error", e.error_description ?? e.error, e.error);
  }
  if (e instanceof oidc.ClientError) {
    const code = e.code ?? "client_error";
    // A provider that answers with something else than OAuth (a proxy's error page, a 5xx) is as good as down.
    if (code === "OAUTH_RESPONSE_IS_NOT_CONFORM" || code === "OAUTH_RESPONSE_IS_NOT_JSON") return new OidcFailure("unreachable", e.message, code);
    return new OidcFailure("invalid_response", e.message, code);
  }
  const name = (e as { name?: unknown })?.name;
  if (e instanceof TypeError || name === "TimeoutError" || name === "AbortError") {
    const cause = (e as { cause?: { code?: unknown } }).cause?.code;
    return new OidcFailure("unreachable", (e as Error).message, typeof cause === "string" ? cause : String(name));
  }
  return new OidcFailure("invalid_response", (e as Error)?.message ?? String(e), "unexpected");
}
