/**
 * A real OpenID Connect provider in the test's process: `oidc-provider` 8.8.1 (9.x warns on
 * Node 20; 8.x supports it), on a free port, with its development login page (any password), one
 * confidential client for Airlock, refresh tokens, and a `groups` claim in the ID token
 * (`conformIdTokenClaims: false`). Accounts live in a map the test edits: a change shows at the
 * next grant (sign-in or refresh), as at a real provider; a removed account's refresh is refused.
 *
 * `login` drives the provider with plain HTTP and a cookie jar, as a browser would, up to the
 * redirect back to Airlock (which it does not follow).
 */
import { createServer, type Server } from "node:http";
import Provider, { type Configuration } from "oidc-provider";
import { freePort } from "../../src/infra/redis-process.js";

export interface TestAccount {
  email: string;
  emailVerified: boolean;
  name: string;
  groups: string[];
}

export interface TestProvider {
  issuer: string;
  clientId: string;
  clientSecret: string;
  /** By login name (the subject); edit freely. */
  accounts: Map<string, TestAccount>;
  /**
   * Follows the provider from its authorization URL through its login page (as `login`) until it
   * redirects back to the client; returns that redirect's URL.
   */
  login(authorizationUrl: string, login: string): Promise<URL>;
  stop(): Promise<void>;
}

export async function startOidcProvider(opts: { redirectUris: string[] }): Promise<TestProvider> {
  const port = await freePort();
  // `localhost`, while Airlock's tests use 127.0.0.1: another site, as a real provider is (SameSite cookies behave as in production).
  const issuer = `http://localhost:${port}`;
  const accounts = new Map<string, TestAccount>();
  const clientId = "airlock-test";
  const clientSecret = "airlock-test-secret-0123456789abcdef";
  const config: Configuration = {
    clients: [{ client_id: clientId, client_secret: clientSecret, redirect_uris: opts.redirectUris, grant_types: ["authorization_code", "refresh_token"], response_types: ["code"], token_endpoint_auth_method: "client_secret_post" }],
    // Groups ride with `profile`, which Airlock asks for by default (real providers have their own ways: README).
    claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name", "groups"] },
    conformIdTokenClaims: false,
    // Seconds; explicit so the provider does not warn. The ID token outlives the tests' clock moves of a few seconds, not the two hours of the expiry test.
    ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, RefreshToken: 3600, IdToken: 600 },
    pkce: { required: () => true },
    cookies: { keys: ["oidc-test-cookie-key-0123456789"] },
    features: { devInteractions: { enabled: true } },
    async findAccount(_ctx, sub) {
      const a = accounts.get(sub);
      if (!a) return undefined;
      return { accountId: sub, claims: () => ({ sub, email: a.email, email_verified: a.emailVerified, name: a.name, groups: [...a.groups] }) };
    },
    // Refresh tokens without the consent prompt `offline_access` needs by default.
    issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
    // First-party client: consent is taken as given (no consent page to click through).
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session!.grantIdFor(ctx.oidc.client!.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client!.clientId, accountId: ctx.oidc.session!.accountId! });
      grant.addOIDCScope(String(ctx.oidc.params!.scope ?? "openid"));
      await grant.save();
      ctx.oidc.session!.grantIdFor(ctx.oidc.client!.clientId, grant.jti);
      return grant;
    },
  };
  const provider = new Provider(issuer, config);
  provider.on("server_error", (_ctx, err) => console.error("test provider error", err));
  const server: Server = createServer(provider.callback());
  await new Promise<void>((res, rej) => server.once("error", rej).listen(port, () => res()));

  async function login(authorizationUrl: string, loginName: string): Promise<URL> {
    const jar = new Map<string, string>();
    const cookie = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
    const keep = (res: Response) => {
      for (const c of res.headers.getSetCookie()) {
        const [pair] = c.split(";");
        const eq = pair!.indexOf("=");
        jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
      }
    };
    let url = new URL(authorizationUrl);
    let res = await fetch(url, { redirect: "manual" });
    // At most a handful of hops: authorize → login page → submit → resume → back to the client.
    for (let hop = 0; hop < 10; hop++) {
      keep(res);
      const location = res.headers.get("location");
      if (location) {
        url = new URL(location, url);
        if (url.origin !== issuer) return url;
        res = await fetch(url, { redirect: "manual", headers: { cookie: cookie() } });
        continue;
      }
      const html = await res.text();
      const action = /<form[^>]*action="([^"]+)"/.exec(html)?.[1];
      const prompt = /name="prompt" value="([a-z]+)"/.exec(html)?.[1];
      if (res.status !== 200 || !action || !prompt) throw new Error(`the provider answered ${res.status} at ${url.pathname}: ${html.slice(0, 300)}`);
      const form: Record<string, string> = prompt === "login" ? { prompt, login: loginName, password: "any" } : { prompt };
      url = new URL(action.replace(/&amp;/g, "&"), url);
      res = await fetch(url, { method: "POST", redirect: "manual", headers: { cookie: cookie(), "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams(form) });
    }
    throw new Error("the provider did not send the browser back");
  }

  return {
    issuer,
    clientId,
    clientSecret,
    accounts,
    login,
    stop: () =>
      new Promise<void>((res) => {
        server.close(() => res());
        server.closeAllConnections();
      }),
  };
}
