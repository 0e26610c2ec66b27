/**
 * The author's pages with a screen reader's eyes: axe-core (WCAG 2 A and AA rules) finds no serious
 * or critical violation on the compose page (new, a saved draft, a refused form), the discard
 * confirmation and My messages, at laptop and phone widths.
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { axeViolations, launchChromium } from "../support/browser.js";
import { startAirlock, tokenOf, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
let browser: Browser;
let draft: string;

beforeAll(async () => {
  [a, browser] = await Promise.all([startAirlock({ HOLD_MIN_SECONDS: "900" }), launchChromium()]);
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: [{ email: "ann@corp.example" }, { email: "ben@other.example" }] })).status).toBe(201);
  draft = (await a.call("author", "POST", "/api/messages", { draft: true, subject: "For axe", markdown: "Hello **team**.", template: "announcement", audience: { lists: ["team"] } })).body.id;
  expect((await a.call("author", "POST", "/api/messages", { subject: "Waiting", markdown: "Hi.", audience: { lists: ["team"] } })).status).toBe(201);
});
afterAll(async () => {
  await browser?.close();
  await a?.stop();
});

async function signedIn(width: number): Promise<Page> {
  // The axe script is injected by the test, which the pages' CSP would (rightly) refuse.
  const context = await browser.newContext({ viewport: { width, height: 900 }, bypassCSP: true });
  const page = await context.newPage();
  await page.goto(`${a.url}/signin`);
  await page.getByLabel("API token").fill(tokenOf("author"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${a.url}/`);
  return page;
}

const axe = (page: Page) => axeViolations(page, { seriousOnly: true });

it("has no serious or critical axe violation on the compose page and My messages, at laptop and phone widths", async () => {
  const page = await signedIn(1280);
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    const paths = ["/compose", `/messages/${draft}/edit`, "/mine", ...(width < 600 ? [`/messages/${draft}/discard`] : [])];
    for (const path of paths) {
      await page.goto(a.url + path);
      expect(await axe(page), `${path} at ${width}px`).toEqual([]);
    }
  }
  // A refused form, its errors shown at their fields (phone width).
  await page.goto(`${a.url}/compose`);
  await page.getByLabel(/Explicit addresses/).fill("nope");
  await page.getByRole("button", { name: "Submit for approval" }).click();
  await page.waitForSelector("#addresses-error");
  expect(await axe(page), "refused form").toEqual([]);
  await page.context().close();
});
