/**
 * The on-call operator's evening, in a real headless Chromium: sign in, a message is approved and
 * appears live with its countdown, switches to sending with a moving progress bar (no reload),
 * is recalled from the dashboard after a confirmation step, and the correction is counted.
 * And an author sees no recall button on someone else's message.
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { launchChromium } from "../support/browser.js";
import { startAirlock, tokenOf, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";

const RECIPIENTS = 400;
let a: TestAirlock;
let browser: Browser;

beforeAll(async () => {
  // 40 recipients/s in transactions of 5: the fan-out takes ~10 s, long enough to watch and recall.
  [a, browser] = await Promise.all([startAirlock({ HOLD_MIN_SECONDS: "4", SEND_RATE_PER_SECOND: "40", RECIPIENTS_PER_TRANSACTION: "5" }), launchChromium()]);
  const recipients = Array.from({ length: RECIPIENTS }, (_, i) => ({ email: `person${String(i).padStart(4, "0")}@corp.example` }));
  expect((await a.call("author", "POST", "/api/audiences", { name: "everyone", recipients })).status).toBe(201);
});
afterAll(async () => {
  await browser?.close();
  await a?.stop();
});

async function signedInPage(user: UserKey): Promise<{ page: Page; problems: string[] }> {
  const page = await browser.newPage();
  const problems: string[] = [];
  page.on("console", (msg) => msg.type() === "error" && problems.push(msg.text())); // CSP violations land here
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(`${a.url}/`);
  expect(page.url()).toContain("/signin");
  await page.getByLabel("API token").fill(tokenOf(user));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${a.url}/`);
  await expect.poll(() => page.locator("#live-status").textContent(), { timeout: 10_000 }).toContain("Live");
  return { page, problems };
}

it("shows a send coming live, counts down, shows progress, recalls it and counts the correction", async () => {
  const { page, problems } = await signedInPage("ops");
  await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));

  const m = (await a.call("author", "POST", "/api/messages", { subject: "Delete the app from your phone", text: "Everyone must delete it today.", audience: { lists: ["everyone"] } })).body;
  const card = page.locator(`[data-message="${m.id}"]`);
  await expect.poll(() => card.count(), { timeout: 10_000 }).toBe(1); // arrived over SSE
  await expect.poll(() => card.locator(".headline").textContent()).toContain(`would go to ${RECIPIENTS} people`);

  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  await expect.poll(() => card.getAttribute("data-state"), { timeout: 10_000 }).toBe("scheduled");
  const headline = card.locator(".headline");
  await expect.poll(() => headline.textContent()).toMatch(new RegExp(`^Going out in \\d seconds? to ${RECIPIENTS} people$`));
  const first = (await headline.textContent())!;
  await expect.poll(() => headline.textContent(), { timeout: 5_000 }).not.toBe(first); // ticks client-side
  expect(await card.getAttribute("class")).toContain("urgency-imminent");

  await expect.poll(() => card.getAttribute("data-state"), { timeout: 20_000 }).toBe("sending");
  const progress = card.locator("progress").first();
  await expect.poll(async () => Number(await progress.getAttribute("value")), { timeout: 10_000 }).toBeGreaterThan(0);
  const early = Number(await progress.getAttribute("value"));
  await expect.poll(async () => Number(await progress.getAttribute("value")), { timeout: 10_000 }).toBeGreaterThan(early);
  expect(Number(await progress.getAttribute("max"))).toBe(RECIPIENTS);
  expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);

  // Recall: the confirmation step asks for a reason and says who would get the correction.
  await card.getByRole("link", { name: "Recall…" }).click();
  await page.waitForURL(`${a.url}/messages/${m.id}/recall`);
  expect(await page.getByRole("heading", { level: 1 }).textContent()).toContain("Recall");
  expect(await page.locator('[data-field="wouldCorrect"]').textContent()).toMatch(/^\d[\d,]* (person|people)$/);
  await page.getByLabel(/Why are you recalling it/).fill("Sent in error: the app is allowed");
  await page.getByLabel(/Correction text/).fill("Please ignore the previous message. You do not need to delete the app.");
  await page.getByRole("button", { name: "Recall message" }).click();
  // The answer to the POST is the message page with the result: no polling, no reload needed.
  await page.waitForURL(`${a.url}/messages/${m.id}#recall-title`);
  expect(await page.locator("#recall-title + .notice").textContent()).toContain(`Recalled by ${USERS.ops.email}`);

  const recalled = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
  expect(["correcting", "corrected"]).toContain(recalled.state);
  const delivered = recalled.recall.deliveredAtRecall as number;
  expect(delivered).toBeGreaterThan(0);
  expect(delivered).toBeLessThan(RECIPIENTS);
  // The custom text waits for a second person (promise 7): another approver approves its digest.
  expect(recalled.correction).toMatchObject({ status: "pending", text: "Please ignore the previous message. You do not need to delete the app." });
  expect(a.sink.received.filter((r) => r.mail.inReplyTo === recalled.messageId)).toHaveLength(0);
  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/correction/approve`, { digest: recalled.correction.digest })).status).toBe(200);

  // The message page's card follows live until the correction is counted.
  const messageCard = page.locator(`[data-message="${m.id}"]`);
  await expect.poll(() => messageCard.getAttribute("data-state"), { timeout: 30_000 }).toBe("corrected");
  await expect.poll(() => messageCard.locator('[data-field="correctionText"]').textContent(), { timeout: 5_000 }).toBe(`${delivered} corrected · 0 failed of ${delivered}`);
  const corrections = a.sink.received.filter((r) => r.mail.inReplyTo === recalled.messageId);
  expect(corrections.flatMap((r) => r.to).length).toBe(delivered);
  expect(problems).toEqual([]);
  await page.close();
});

it("shows an author no recall button on someone else's message, and one on their own", async () => {
  const other = (await a.call("author2", "POST", "/api/messages", { subject: "Not yours", text: "x", audience: { addresses: ["x@corp.example"] } })).body;
  const own = (await a.call("author", "POST", "/api/messages", { subject: "Yours", text: "x", audience: { addresses: ["y@corp.example"] } })).body;
  for (const m of [other, own]) expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  const { page, problems } = await signedInPage("author");
  await page.goto(`${a.url}/messages/${other.id}`);
  expect(await page.getByRole("link", { name: "Recall…" }).count()).toBe(0);
  await page.goto(`${a.url}/messages/${other.id}/recall`);
  expect(await page.locator("main").textContent()).toContain("Authors may recall only their own messages");
  expect(await page.getByRole("button", { name: "Recall message" }).count()).toBe(0);
  await page.goto(`${a.url}/messages/${own.id}`);
  expect(await page.getByRole("link", { name: "Recall…" }).count()).toBe(1);
  expect(problems).toEqual([]);
  await page.close();
});
