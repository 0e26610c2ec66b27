/**
 * An approver's review in a real headless Chromium, with real Redis and a real SMTP sink: the link
 * in the approval request mail opens the review page (after signing in), Approve approves the
 * revision and digest shown, and the message that arrives is what the page showed — the text part
 * byte for byte (CRLF aside), the digest of the very bytes sent. And axe-core finds no serious or
 * critical violation on the review page, at laptop and phone widths.
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { mimeDigest } from "../../src/mail/compose.js";
import { axeViolations, launchChromium } from "../support/browser.js";
import { startAirlock, tokenOf, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";

const TEAM = ["ann@corp.example", "ben@corp.example", "cy@eu.corp.example"];
let a: TestAirlock;
let browser: Browser;
/** Raw bytes of every transaction, as the sink received them. */
const raws: Array<{ to: string[]; raw: Buffer }> = [];

beforeAll(async () => {
  [a, browser] = await Promise.all([startAirlock({ HOLD_MIN_SECONDS: "1" }), launchChromium()]);
  a.sink.behaviour.data = (to, raw) => {
    raws.push({ to, raw });
    return null;
  };
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: TEAM.map((email) => ({ email })) })).status).toBe(201);
});
afterAll(async () => {
  await browser?.close();
  await a?.stop();
});

const lf = (s: string) => s.replace(/\r\n/g, "\n");

async function signInOn(page: Page, user: UserKey): Promise<void> {
  await page.getByLabel("API token").fill(tokenOf(user));
  await page.getByRole("button", { name: "Sign in" }).click();
}

it("opens the review page from the approval request mail, approves, and what arrives is what the page showed", async () => {
  const m = (await a.call("author", "POST", "/api/messages", {
    subject: "Canteen closed on Friday",
    markdown: "The canteen is **closed** on Friday.\n\n- bring lunch\n- or order in & share",
    template: "policy-notice",
    audience: { lists: ["team"] },
  })).body as { id: string; digest: string; messageId: string };
  const request = await a.until("the approval request", () => a.sink.received.find((r) => r.to.includes(USERS.approver1.email) && r.mail.subject?.includes("Canteen closed on Friday")));
  // The mail's link names PUBLIC_URL (not this test's port): follow its path on this Airlock.
  const link = new RegExp(`^https?://[^/\\s]+(/messages/${m.id}/review)$`, "m").exec(request.mail.text ?? "")?.[1];
  expect(link).toBe(`/messages/${m.id}/review`);

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (msg) => msg.type() === "error" && problems.push(msg.text())); // CSP violations land here
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(a.url + link!);
  await page.waitForURL(/\/signin\?next=/);
  await signInOn(page, "approver1");
  await page.waitForURL(`${a.url}${link}`);

  const shownText = (await page.locator("#review-text").textContent())!;
  const shownDigest = (await page.locator("#review-digest").textContent())!;
  expect(shownDigest).toBe(m.digest);
  expect(shownText).toContain("or order in & share");
  await expect.poll(() => page.frameLocator(".preview-frame").locator("body").textContent()).toContain("closed");
  // Opening the page changed nothing.
  expect((await a.call("ops", "GET", `/api/messages/${m.id}`)).body).toMatchObject({ state: "pending_approval", approvals: [] });

  await page.getByLabel(/^Comment/).fill("Checked both parts");
  await page.getByRole("button", { name: "Approve revision 1" }).click();
  await page.waitForURL(`${a.url}/messages/${m.id}?done=approved`);
  expect(await page.locator("#decision-notice").textContent()).toMatch(/^Approved\. It is scheduled/);
  const approved = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
  expect(approved.approvals).toEqual([expect.objectContaining({ by: USERS.approver1.email, digest: shownDigest, comment: "Checked both parts" })]);

  // The hold passes; it goes out. Each recipient gets the page's text part and the digest approved.
  await a.until("sent", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "sent", 20_000);
  const arrived = a.sink.received.filter((r) => r.mail.messageId === m.messageId);
  expect(arrived.flatMap((r) => r.to).sort()).toEqual([...TEAM].sort());
  for (const r of arrived) expect(lf(r.mail.text ?? "")).toBe(shownText);
  const sentRaw = raws.filter((r) => r.raw.includes(Buffer.from(m.messageId)) && TEAM.some((t) => r.to.includes(t)));
  expect(sentRaw.length).toBeGreaterThan(0);
  for (const r of sentRaw) expect(mimeDigest(r.raw)).toBe(shownDigest);
  expect(problems).toEqual([]);
  await context.close();
});

const axe = (page: Page) => axeViolations(page, { seriousOnly: true });

it("has no serious or critical axe violation on the review page, at laptop and phone widths", async () => {
  // Revision 2, with explicit addresses: the diff, both recipient tables and both forms are on the page.
  const m = (await a.call("author", "POST", "/api/messages", { subject: "For axe", markdown: "Hello **team**.", audience: { lists: ["team"] } })).body as { id: string };
  const edited = await a.call("author", "PUT", `/api/messages/${m.id}`, { subject: "For axe", markdown: "Hello **everyone**.", audience: { lists: ["team"], addresses: ["dee@corp.example"] } });
  expect(edited.status).toBe(200);
  // The axe script is injected by the test, which the pages' CSP would (rightly) refuse.
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
  const page = await context.newPage();
  await page.goto(`${a.url}/signin`);
  await signInOn(page, "approver2");
  await page.waitForURL(`${a.url}/`);
  for (const width of [1280, 390]) {
    await page.setViewportSize({ width, height: 900 });
    await page.goto(`${a.url}/messages/${m.id}/review`);
    expect(await axe(page), `review at ${width}px`).toEqual([]);
  }
  // A refused rejection (no reason; the browser's own check bypassed), its error at the field, at phone width.
  await page.locator("#reject-reason").evaluate((el) => el.removeAttribute("required"));
  await page.getByRole("button", { name: "Reject revision 2" }).click();
  await page.waitForSelector("#reject-reason-error");
  expect(await axe(page), "refused rejection").toEqual([]);
  // The author's view: no buttons, and why.
  const own = await browser.newContext({ viewport: { width: 390, height: 900 }, bypassCSP: true });
  const authorPage = await own.newPage();
  await authorPage.goto(`${a.url}/signin`);
  await signInOn(authorPage, "author");
  await authorPage.waitForURL(`${a.url}/`);
  await authorPage.goto(`${a.url}/messages/${m.id}/review`);
  expect(await authorPage.locator("#no-decision").textContent()).toContain("You wrote this message");
  expect(await axe(authorPage), "the author's view").toEqual([]);
  await Promise.all([context.close(), own.close()]);
});
