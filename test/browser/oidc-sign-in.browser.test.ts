/**
 * OpenID Connect sign-in in a real headless Chromium against a real provider (oidc-provider, in
 * process, on `localhost` while Airlock is on 127.0.0.1: another site, so the SameSite=Strict
 * session cookie behaves as in production). An approver opens a review link, signs in at the
 * provider, lands on the review page with the roles their groups map to, and sees Approve; removed
 * from the approvers' group at the provider, they cannot approve once their session's re-check has
 * run (OIDC_RECHECK_SECONDS=5; the test polls for it).
 */
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { freePort } from "../../src/infra/redis-process.js";
import { launchChromium } from "../support/browser.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";
import { startOidcProvider, type TestProvider } from "../support/oidc-provider.js";

let a: TestAirlock;
let idp: TestProvider;
let browser: Browser;
let base: string;

beforeAll(async () => {
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  idp = await startOidcProvider({ redirectUris: [`${base}/auth/callback`] });
  [a, browser] = await Promise.all([
    startAirlock(
      {
        PUBLIC_URL: base,
        OIDC_ISSUER: idp.issuer,
        OIDC_CLIENT_ID: idp.clientId,
        OIDC_CLIENT_SECRET: idp.clientSecret,
        OIDC_PROVIDER_NAME: "Test IdP",
        OIDC_RECHECK_SECONDS: "5",
        DASHBOARD_TOKEN_SIGNIN: "admins",
      },
      { port },
    ),
    launchChromium(),
  ]);
  idp.accounts.set("lee", { email: "lee@corp.example", emailVerified: true, name: "Lee Lead", groups: ["comms-staff", "comms-approvers"] });
});
afterAll(async () => {
  await browser?.close();
  await a?.stop();
  await idp?.stop();
});

it("signs in at the provider, lands with the mapped roles, and cannot approve after the re-check once removed from the approvers' group", async () => {
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Parking closed", text: "The car park is closed on Monday.", audience: { addresses: ["ann@corp.example"] } })).body as { id: string };
  const review = `${base}/messages/${m.id}/review`;
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(review);
  await page.waitForURL(/\/signin\?next=/);
  // Break-glass only: the token form is folded away for administrators.
  expect(await page.getByText("Break-glass sign-in for administrators").count()).toBe(1);
  await page.getByRole("link", { name: "Sign in with Test IdP" }).click();
  await page.waitForURL((u) => u.origin === idp.issuer);
  await page.locator('input[name="login"]').fill("lee");
  await page.locator('input[name="password"]').fill("whatever");
  await page.locator('button[type="submit"]').click();
  // The callback's page moves on by itself (Refresh) to where the sign-in started.
  await page.waitForURL(review);
  expect(await page.locator(".roles").first().textContent()).toBe("(author, approver)");
  const approve = page.getByRole("button", { name: "Approve revision 1" });
  expect(await approve.count()).toBe(1);
  const form = await page.locator(`form[action$="/approve"]`).evaluate((f) => Object.fromEntries(new FormData(f as HTMLFormElement) as unknown as Iterable<[string, string]>));

  idp.accounts.get("lee")!.groups = ["comms-staff"];
  // The re-check is due 5 s after the sign-in (real time here); each reload is a request that may run it.
  await a.until(
    "the re-check took the approver role away",
    async () => {
      await page.reload();
      return (await page.locator(".roles").first().textContent()) === "(author)";
    },
    30_000,
  );
  expect(await approve.count()).toBe(0);
  // The form as it was shown before still cannot approve: the session's roles are the re-checked ones.
  const res = await page.request.post(`${review}/approve`, { form, headers: { origin: base }, maxRedirects: 0 });
  expect(res.status()).toBe(403);
  const after = (await a.call("author", "GET", `/api/messages/${m.id}`)).body as { state: string; approvals: unknown[] };
  expect(after).toMatchObject({ state: "pending_approval", approvals: [] });
  await context.close();
});
