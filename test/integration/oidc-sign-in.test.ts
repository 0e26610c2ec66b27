/**
 * OpenID Connect sign-in against a real provider (oidc-provider, in process), over plain HTTP:
 * the happy path (session, roles mapped from groups, audit entry, the registry that brings approval
 * requests to an approver who is not in USERS_FILE), then every bad input — replayed, cross-browser,
 * tampered (state, code, iss), wrong nonce, expired ID token, provider errors, unverified email,
 * no mapped group, an address already bound to another subject, an unreachable provider — each a
 * clear page with a 4xx (503 for the unreachable provider) and no session. And the re-check: a
 * removed group or a refused refresh ends the session at the next request after it.
 */
import { createHash } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { flatFields } from "../../src/audit/chain.js";
import { freePort } from "../../src/infra/redis-process.js";
import { keys } from "../../src/store/keys.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";
import { startOidcProvider, type TestProvider } from "../support/oidc-provider.js";

const RECHECK_SECONDS = 5;
let a: TestAirlock;
let idp: TestProvider;
let base: string;

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  idp = await startOidcProvider({ redirectUris: [`${base}/auth/callback`] });
  a = await startAirlock(
    { PUBLIC_URL: base, OIDC_ISSUER: idp.issuer, OIDC_CLIENT_ID: idp.clientId, OIDC_CLIENT_SECRET: idp.clientSecret, OIDC_PROVIDER_NAME: "Test IdP", OIDC_RECHECK_SECONDS: String(RECHECK_SECONDS) },
    { port },
  );
  idp.accounts.set("dana", { email: "Dana@corp.example", emailVerified: true, name: "Dana Approver", groups: ["comms-approvers", "everyone"] });
  idp.accounts.set("sam", { email: "sam@corp.example", emailVerified: true, name: "Sam Staff", groups: ["comms-staff", "comms-approvers"] });
  idp.accounts.set("rik", { email: "rik@corp.example", emailVerified: true, name: "Rik Refresh", groups: ["it-oncall"] });
  idp.accounts.set("una", { email: "una@corp.example", emailVerified: false, name: "Una Unverified", groups: ["comms-staff"] });
  idp.accounts.set("nora", { email: "nora@corp.example", emailVerified: true, name: "Nora Nogroup", groups: ["finance"] });
  idp.accounts.set("dana-impostor", { email: "dana@corp.example", emailVerified: true, name: "Not Dana", groups: ["airlock-admins"] });
});
afterAll(async () => {
  await a?.stop();
  await idp?.stop();
});

interface Begun {
  tx: string;
  authUrl: URL;
}

async function begin(): Promise<Begun> {
  const res = await fetch(`${base}/auth/login?next=/history`, { redirect: "manual" });
  expect(res.status).toBe(303);
  const tx = /^airlock_oidc=([A-Za-z0-9_-]{43});/.exec(res.headers.getSetCookie().find((c) => c.startsWith("airlock_oidc=")) ?? "")?.[1];
  expect(tx).toBeDefined();
  const authUrl = new URL(res.headers.get("location")!);
  expect(authUrl.origin).toBe(idp.issuer);
  expect(authUrl.searchParams.get("code_challenge_method")).toBe("S256");
  for (const p of ["state", "nonce", "code_challenge"]) expect(authUrl.searchParams.get(p)).toMatch(/^[A-Za-z0-9_-]{20,}$/);
  return { tx: tx!, authUrl };
}

async function callback(url: URL | string, tx: string | null): Promise<{ status: number; html: string; session: string | null; refresh: string | null }> {
  const u = new URL(url);
  const res = await fetch(`${base}/auth/callback${u.search}`, { redirect: "manual", headers: tx ? { cookie: `airlock_oidc=${tx}` } : {} });
  const session = /^airlock_session=([A-Za-z0-9_-]{43});/.exec(res.headers.getSetCookie().find((c) => c.startsWith("airlock_session=")) ?? "")?.[1] ?? null;
  return { status: res.status, html: await res.text(), session, refresh: res.headers.get("refresh") };
}

/** Signs `login` in all the way: the session cookie's value. */
async function signIn(login: string): Promise<string> {
  const b = await begin();
  const back = await idp.login(b.authUrl.href, login);
  const r = await callback(back, b.tx);
  expect(r.status, r.html).toBe(200);
  expect(r.session).not.toBeNull();
  return r.session!;
}

const page = (session: string, path = "/") => fetch(`${base}${path}`, { redirect: "manual", headers: { cookie: `airlock_session=${session}` } });
const signedIn = async (session: string) => (await page(session)).status === 200;
const auditOf = async (action: string) => (await a.rt.redis.xrange(keys.auditAll(), "-", "+")).map(([, f]) => flatFields(f)).filter((e) => e.action === action);

describe("OpenID Connect sign-in", () => {
  it("shows the provider's button on the sign-in page, next to the token form (DASHBOARD_TOKEN_SIGNIN=everyone)", async () => {
    const html = await (await fetch(`${base}/signin?next=/history`)).text();
    expect(html).toContain('href="/auth/login?next=%2Fhistory"');
    expect(html).toContain("Sign in with Test IdP");
    expect(html).toContain('name="token"');
  });

  it("signs in with PKCE, state and nonce, maps groups to roles, audits it, and the page moves on by itself", async () => {
    const b = await begin();
    const back = await idp.login(b.authUrl.href, "sam");
    expect(back.origin + back.pathname).toBe(`${base}/auth/callback`);
    const r = await callback(back, b.tx);
    expect(r.status).toBe(200);
    expect(r.refresh).toBe("0; url=/history");
    const front = await page(r.session!);
    expect(front.status).toBe(200);
    expect(await front.text()).toMatch(/Sam Staff <span class="roles">\(author, approver\)<\/span>/);
    const entry = (await auditOf("signIn")).find((e) => e.actor === "sam@corp.example")!;
    expect(JSON.parse(entry.detail!)).toMatchObject({ method: "oidc", issuer: idp.issuer, subject: "sam", roles: ["author", "approver"], groups: ["comms-staff", "comms-approvers"] });
  });

  it("keeps the approver in every process's directory, so approval requests reach them (lower-cased address)", async () => {
    await signIn("dana");
    await a.until("dana in the directory", () => a.rt.users.withRole("approver").some((u) => u.email === "dana@corp.example"));
    const m = await a.call("author", "POST", "/api/messages", { subject: "OIDC approver reach", text: "Hello", audience: { addresses: ["ann@corp.example"] } });
    expect(m.status).toBe(201);
    await a.until("the approval request to dana", () => a.sink.received.find((r) => r.to.includes("dana@corp.example") && r.mail.subject?.includes("OIDC approver reach")));
  });

  it("refuses a replayed callback and one brought by another browser (no transaction cookie)", async () => {
    const b = await begin();
    const back = await idp.login(b.authUrl.href, "sam");
    const elsewhere = await callback(back, null);
    expect(elsewhere.status).toBe(400);
    expect(elsewhere.html).toContain("This sign-in has expired or was already used");
    expect(elsewhere.session).toBeNull();
    expect((await callback(back, b.tx)).status).toBe(200);
    const replay = await callback(back, b.tx);
    expect(replay.status).toBe(400);
    expect(replay.html).toContain("This sign-in has expired or was already used");
    expect(replay.session).toBeNull();
  });

  const tampered: Array<[string, (u: URL) => void, number, string]> = [
    ["a wrong state", (u) => u.searchParams.set("state", "x".repeat(43)), 400, "This sign-in could not be verified"],
    ["an unknown issuer (RFC 9207 iss)", (u) => u.searchParams.set("iss", "https://idp.evil.example"), 400, "This sign-in could not be verified"],
    ["a tampered code", (u) => u.searchParams.set("code", u.searchParams.get("code")!.slice(0, -4) + "AAAA"), 400, "The sign-in provider reported an error"],
  ];
  for (const [what, tamper, status, heading] of tampered) {
    it(`refuses a callback with ${what}: ${status}, a clear page, no session`, async () => {
      const b = await begin();
      const back = await idp.login(b.authUrl.href, "sam");
      tamper(back);
      const r = await callback(back, b.tx);
      expect(r.status).toBe(status);
      expect(r.html).toContain(heading);
      expect(r.session).toBeNull();
    });
  }

  it("refuses an ID token whose nonce is not the one this browser's sign-in sent", async () => {
    const b = await begin();
    const back = await idp.login(b.authUrl.href, "sam");
    const key = keys.oidcTransaction(createHash("sha256").update(b.tx).digest("hex"));
    expect(await a.rt.redis.hset(key, "nonce", "another-nonce-0123456789abcdef")).toBe(0); // the field existed
    const r = await callback(back, b.tx);
    expect(r.status).toBe(400);
    expect(r.html).toContain("This sign-in could not be verified");
    expect(r.session).toBeNull();
  });

  it("refuses an expired ID token (Airlock's clock two hours on)", async () => {
    const b = await begin();
    const back = await idp.login(b.authUrl.href, "sam");
    a.clock.advance(2 * 3600_000);
    try {
      const r = await callback(back, b.tx);
      expect(r.status).toBe(400);
      expect(r.html).toContain("This sign-in could not be verified");
      expect(r.session).toBeNull();
    } finally {
      a.clock.advance(-2 * 3600_000);
    }
  });

  it("shows the provider's error: access denied is a 403, another error a 400", async () => {
    for (const [error, status, heading] of [["access_denied", 403, "did not let you in"], ["server_error", 400, "reported an error"]] as const) {
      const b = await begin();
      const u = new URL(`${base}/auth/callback`);
      u.search = new URLSearchParams({ error, error_description: "nope", state: b.authUrl.searchParams.get("state")!, iss: idp.issuer }).toString();
      const r = await callback(u, b.tx);
      expect(r.status).toBe(status);
      expect(r.html).toContain(heading);
      expect(r.session).toBeNull();
    }
  });

  it("refuses, audited, an unverified email, a person with no mapped group, and a second subject with a bound address", async () => {
    for (const [login, heading, reason, actor] of [
      ["una", "Your email address is not verified", "email_unverified", "una@corp.example"],
      ["nora", "You have no role in Airlock", "no_role", "nora@corp.example"],
      ["dana-impostor", "This email address belongs to another account", "email_bound_to_another_identity", "dana@corp.example"],
    ] as const) {
      const b = await begin();
      const r = await callback(await idp.login(b.authUrl.href, login), b.tx);
      expect(r.status, login).toBe(403);
      expect(r.html).toContain(heading);
      expect(r.session).toBeNull();
      const refused = (await auditOf("signInRefused")).filter((e) => e.actor === actor).map((e) => JSON.parse(e.detail!) as { reason: string; subject: string });
      expect(refused.map((d) => [d.reason, d.subject])).toContainEqual([reason, login]);
    }
    // The impostor got nothing: the directory still knows dana as dana's own subject, with her roles.
    expect(a.rt.users.byAddress("dana@corp.example")?.roles).toEqual(["approver"]);
  });

  it("ends a session at the first request after the re-check when its groups no longer map, and forgets the person", async () => {
    idp.accounts.set("gil", { email: "gil@corp.example", emailVerified: true, name: "Gil Going", groups: ["comms-approvers"] });
    const s = await signIn("gil");
    await a.until("gil in the directory", () => a.rt.users.byAddress("gil@corp.example") !== null);
    idp.accounts.get("gil")!.groups = ["finance"];
    expect(await signedIn(s)).toBe(true); // not re-checked yet: the session stands
    a.clock.advance(RECHECK_SECONDS * 1000); // the re-check is due (Airlock's clock: no waiting)
    expect(await signedIn(s)).toBe(false);
    await a.until("gil gone from the directory", () => a.rt.users.byAddress("gil@corp.example") === null);
    const ended = (await auditOf("sessionEnded")).find((e) => e.actor === "gil@corp.example")!;
    expect(JSON.parse(ended.detail!)).toMatchObject({ reason: "refused:no_role" });
  });

  it("keeps a session whose re-check succeeds (roles re-read), and ends one whose refresh is refused", async () => {
    const s = await signIn("rik");
    a.clock.advance(RECHECK_SECONDS * 1000);
    expect(await signedIn(s)).toBe(true); // refreshed: same groups
    idp.accounts.delete("rik"); // the provider refuses this account's refresh token from now on
    a.clock.advance(RECHECK_SECONDS * 1000);
    expect(await signedIn(s)).toBe(false);
    const ended = (await auditOf("sessionEnded")).find((e) => e.actor === "rik@corp.example")!;
    expect(JSON.parse(ended.detail!)).toMatchObject({ reason: "refresh_refused" });
  });

  it("answers 503 with a page, and no session, when the provider cannot be reached at the callback", async () => {
    const b = await begin();
    const back = await idp.login(b.authUrl.href, "sam");
    await idp.stop();
    const r = await callback(back, b.tx);
    expect(r.status).toBe(503);
    expect(r.html).toContain("The sign-in provider cannot be reached");
    expect(r.session).toBeNull();
  });
});
