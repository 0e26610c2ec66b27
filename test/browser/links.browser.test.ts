/**
 * An approver opens the link from their email in a real (headless) Chromium: the page and its
 * scripts load without changing anything, then a click on Approve approves and says so.
 */
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { launchChromium } from "../support/browser.js";
import { startAirlock, USERS, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
let browser: Browser;

beforeAll(async () => {
  [a, browser] = await Promise.all([startAirlock({ HOLD_MIN_SECONDS: "600" }), launchChromium()]);
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: [{ email: "ann@corp.example" }, { email: "ben@corp.example" }] })).status).toBe(201);
});
afterAll(async () => {
  await browser?.close();
  await a?.stop();
});

it("opens an approval link, changes nothing until Approve is clicked, then confirms", async () => {
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Browser check", text: "Hello team.", audience: { lists: ["team"] } })).body;
  const mail = await a.until("approval request", () => a.sink.received.find((r) => r.to.includes(USERS.approver1.email) && r.mail.subject?.includes("Browser check")));
  const tokens = [...(mail.mail.text ?? "").matchAll(/\/links\/([A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})/g)].map((x) => x[1]!);
  expect(tokens).toHaveLength(2);

  const page = await browser.newPage();
  const problems: string[] = [];
  page.on("console", (msg) => msg.type() === "error" && problems.push(msg.text())); // CSP violations land here
  page.on("pageerror", (e) => problems.push(e.message));

  // Find the approve link the way a person would: by what its page says.
  let approvePage = false;
  for (const token of tokens) {
    await page.goto(`${a.url}/links/${token}`, { waitUntil: "networkidle" });
    if ((await page.locator('input[name="action"]').getAttribute("value")) === "approve") {
      approvePage = true;
      break;
    }
  }
  expect(approvePage).toBe(true);
  await expect.poll(() => page.getByRole("heading", { level: 1 }).textContent(), { timeout: 15_000 }).toContain("Approve");
  // The stylesheet loaded (the page has no inline style to fall back on).
  expect(await page.evaluate(() => document.styleSheets.length)).toBeGreaterThan(0);

  // After the page and its scripts loaded: still nothing changed.
  const before = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
  expect(before).toMatchObject({ state: "pending_approval", approvals: [] });

  await page.getByLabel(/comment/i).fill("Looks right");
  await Promise.all([page.waitForResponse((r) => r.request().method() === "POST"), page.getByRole("button", { name: /^Approve/ }).click()]);
  await expect.poll(() => page.getByRole("heading", { level: 1 }).textContent(), { timeout: 15_000 }).toBe("Approved");
  const after = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
  expect(after.state).toBe("scheduled");
  expect(after.approvals).toEqual([expect.objectContaining({ by: USERS.approver1.email, comment: "Looks right" })]);
  expect(problems).toEqual([]);
  await page.close();
});
