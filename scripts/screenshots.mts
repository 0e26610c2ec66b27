/**
 * `npm run screenshots`: retakes the dashboard screenshots in docs/screenshots/ (shown in the
 * README) with a throw-away Airlock (own redis-server, in-process SMTP sink) and Debian's
 * chromium. Deterministic content; the countdowns and counts are whatever they are at the moment.
 */
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { launchChromium } from "../test/support/browser.js";
import { startAirlock, tokenOf } from "../test/support/airlock.js";

const out = resolve("docs/screenshots");
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
  const box = await page.locator(`[data-message="${going.id}"]`).boundingBox();
  if (!box) throw new Error("the sending card is not on the page");
  await page.screenshot({ path: `${out}/sending.png`, clip: box });

  await page.goto(`${a.url}/messages/${going.id}/recall`);
  await page.getByLabel(/Why are you recalling it/).fill("Sent in error: the app is allowed");
  await page.getByLabel(/Correction text/).fill("Please ignore the previous message: you do not need to delete the app.");
  await page.screenshot({ path: `${out}/recall.png`, fullPage: true });
  await page.getByRole("button", { name: "Recall message" }).click();
  await page.waitForURL(`${a.url}/messages/${going.id}#recall-title`);
  await a.until("corrected", async () => (await a.call("ops", "GET", `/api/messages/${going.id}`)).body.state === "corrected", 60_000);
  await page.goto(`${a.url}/messages/${going.id}`);
  await page.screenshot({ path: `${out}/message.png`, fullPage: false });

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
