/**
 * `npm run screenshots`: retakes the dashboard screenshots in docs/screenshots/ (shown in the
 * README: pending sends, a send going out, recall, a message, compose, an approver's review, a
 * phone) with a throw-away Airlock (own redis-server, in-process SMTP sink) and Debian's
 * chromium. Deterministic content; the countdowns and counts are whatever they are at the moment.
 */
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import type { Page } from "playwright-core";
import { launchChromium } from "../test/support/browser.js";
import { startAirlock, tokenOf } from "../test/support/airlock.js";

const out = resolve("docs/screenshots");

/**
 * The whole page in a viewport as tall as it is, rather than a full-page capture: Chromium paints a
 * sandboxed preview frame only once it is in the viewport, and the compose preview is sticky.
 */
async function shootWhole(p: Page, path: string): Promise<void> {
  const height = await p.evaluate(() => document.documentElement.scrollHeight);
  await p.setViewportSize({ width: p.viewportSize()!.width, height });
  await p.evaluate(() => window.scrollTo(0, 0));
  await p.screenshot({ path });
}
const CANTEEN = "The canteen is **closed** on Friday 19 December for the kitchen refit.\n\n- bring lunch\n- or order in\n\nQuestions to [facilities](mailto:facilities@corp.example).";
mkdirSync(out, { recursive: true });

// Slow sending (60 recipients/s) so the fan-out is caught in the middle.
const a = await startAirlock({ HOLD_MIN_SECONDS: "3", SEND_RATE_PER_SECOND: "60", RECIPIENTS_PER_TRANSACTION: "10" });
const browser = await launchChromium();
try {
  const staff = Array.from({ length: 2400 }, (_, i) => ({ email: `employee${i}@corp.example` }));
  await a.call("admin", "POST", "/api/audiences", { name: "all-staff", recipients: staff });
  await a.call("admin", "POST", "/api/audiences", { name: "managers", recipients: staff.slice(0, 300) });

  const submit = async (author: "author" | "author2", subject: string, text: string, lists: string[], holdMinutes?: number) =>
    (await a.call(author, "POST", "/api/messages", { subject, text, audience: { lists }, ...(holdMinutes ? { holdMinutes } : {}) })).body as { id: string };
  const approve = async (id: string) => {
    await a.call("approver1", "POST", `/api/messages/${id}/approve`, { revision: 1, comment: "Checked" });
    await a.call("approver2", "POST", `/api/messages/${id}/approve`, { revision: 1, comment: "Fine" });
  };

  await submit("author2", "Q4 expenses deadline", "Please submit your Q4 expenses by 12 December.", ["managers"]);
  const later = await submit("author", "Office closure on 24 December", "All offices close at noon on 24 December.", ["all-staff"], 90);
  await approve(later.id);
  const soon = await submit("author", "New travel policy", "The new travel policy applies from 1 January.", ["all-staff"], 6);
  await approve(soon.id);
  const going = await submit("author", "Delete the app from your phone", "Everyone must delete the app from any phone with company mail, today.", ["all-staff"]);
  await approve(going.id);
  await a.until("sending", async () => (await a.call("ops", "GET", `/api/messages/${going.id}`)).body.counts.sent > 500, 30_000);

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${a.url}/signin`);
  await page.getByLabel("API token").fill(tokenOf("ops"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${a.url}/`);
  await page.locator("#live-status", { hasText: "Live" }).waitFor();
  await page.screenshot({ path: `${out}/pending.png`, fullPage: true });
  // The card is swapped in place on every progress event, so an element screenshot can lose its
  // element: shoot the page region where the card is instead.
  let box = null;
  // Measured between two swaps: a card replaced while it is measured has no box; measure again.
  for (let attempt = 0; attempt < 20 && !box; attempt++) box = await page.locator(`[data-message="${going.id}"]`).boundingBox();
  if (!box) throw new Error("the sending card is not on the page");
  await page.screenshot({ path: `${out}/sending.png`, clip: box });

  await page.goto(`${a.url}/messages/${going.id}/recall`);
  await page.getByLabel(/Why are you recalling it/).fill("Sent in error: the app is allowed");
  await page.getByLabel(/Correction text/).fill("Please ignore the previous message: you do not need to delete the app.");
  await page.screenshot({ path: `${out}/recall.png`, fullPage: true });
  await page.getByRole("button", { name: "Recall message" }).click();
  await page.waitForURL(`${a.url}/messages/${going.id}#recall-title`);
  // A custom correction text goes out once an approver other than the recaller approves it.
  const recalled = (await a.call("ops", "GET", `/api/messages/${going.id}`)).body as { correction: { digest: string } };
  await a.call("approver1", "POST", `/api/messages/${going.id}/correction/approve`, { digest: recalled.correction.digest });
  await a.until("corrected", async () => (await a.call("ops", "GET", `/api/messages/${going.id}`)).body.state === "corrected", 60_000);
  await page.goto(`${a.url}/messages/${going.id}`);
  await page.screenshot({ path: `${out}/message.png`, fullPage: false });

  // Compose: a Markdown draft in a house template, and its live preview (both parts as they will be sent).
  const author = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
  await author.goto(`${a.url}/signin`);
  await author.getByLabel("API token").fill(tokenOf("author"));
  await author.getByRole("button", { name: "Sign in" }).click();
  await author.waitForURL(`${a.url}/`);
  await author.goto(`${a.url}/compose`);
  await author.getByLabel("Subject").fill("Canteen closed on Friday");
  await author.getByRole("checkbox", { name: /managers/ }).check();
  await author.getByLabel("House template").selectOption({ label: "Policy notice" });
  await author.getByLabel(/^Message/).fill(CANTEEN);
  await author.locator("#preview-text", { hasText: "order in" }).waitFor();
  await author.frameLocator("#preview-html").locator("body", { hasText: "order in" }).waitFor();
  await author.getByLabel(/^Message/).blur();
  await shootWhole(author, `${out}/compose.png`);

  // Review: revision 2 of a message for all staff (two approvals), one given; an approver's page.
  const draft = (await a.call("author", "POST", "/api/messages", { subject: "Canteen closed on Friday", markdown: CANTEEN, template: "policy-notice", audience: { lists: ["all-staff"] } })).body as { id: string };
  const revised = (await a.call("author", "PUT", `/api/messages/${draft.id}`, {
    subject: "Canteen closed on Friday",
    markdown: CANTEEN.replace("- or order in", "- or order in (menus at reception)"),
    template: "policy-notice",
    audience: { lists: ["all-staff"] },
    holdMinutes: 30,
  })).body as { id: string; digest: string };
  await a.call("approver2", "POST", `/api/messages/${revised.id}/approve`, { revision: 2, digest: revised.digest, comment: "Menus confirmed" });
  const approver = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await approver.goto(`${a.url}/messages/${revised.id}/review`);
  await approver.getByLabel("API token").fill(tokenOf("approver1"));
  await approver.getByRole("button", { name: "Sign in" }).click();
  await approver.waitForURL(`${a.url}/messages/${revised.id}/review`);
  await approver.frameLocator(".preview-frame").locator("body", { hasText: "menus at reception" }).waitFor();
  await shootWhole(approver, `${out}/review.png`);

  const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
  await phone.goto(`${a.url}/signin`);
  await phone.getByLabel("API token").fill(tokenOf("approver1"));
  await phone.getByRole("button", { name: "Sign in" }).click();
  await phone.waitForURL(`${a.url}/`);
  await phone.screenshot({ path: `${out}/pending-phone.png`, fullPage: false });
  process.stdout.write(`screenshots written to ${out}\n`);
} finally {
  await browser.close();
  await a.stop();
}
