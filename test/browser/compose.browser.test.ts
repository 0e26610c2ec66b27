/**
 * An author's day in a real headless Chromium, with real Redis and a real SMTP sink: compose in
 * Markdown, save a draft, reload it, watch the preview follow the typing, be warned before leaving
 * with unsaved changes, send oneself a test, submit; an approver approves the revision and digest;
 * the message arrives with the very text part the preview showed. Form errors keep what was typed.
 * (axe on these pages: compose-a11y.browser.test.ts.)
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { launchChromium, signedInWithToken } from "../support/browser.js";
import { startAirlock, tokenOf, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";

const TEAM = ["ann@corp.example", "ben@corp.example", "cy@corp.example"];
let a: TestAirlock;
let browser: Browser;

beforeAll(async () => {
  [a, browser] = await Promise.all([startAirlock({ HOLD_MIN_SECONDS: "2" }), launchChromium()]);
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: TEAM.map((email) => ({ email })) })).status).toBe(201);
});
afterAll(async () => {
  await browser?.close();
  await a?.stop();
});

function signedIn(user: UserKey, opts: { width?: number; bypassCSP?: boolean } = {}): Promise<{ page: Page; problems: string[] }> {
  return signedInWithToken(browser, a.url, tokenOf(user), opts);
}

const lf = (s: string) => s.replace(/\r\n/g, "\n");

it("composes in Markdown, saves, reloads, previews live, tests, submits; what arrives is what the preview showed", async () => {
  const { page, problems } = await signedIn("author");
  await page.getByRole("link", { name: "Compose" }).click();
  await page.waitForURL(`${a.url}/compose`);

  await page.getByLabel("Subject").fill("Canteen closed on Friday");
  await page.getByRole("checkbox", { name: /team/ }).check();
  await page.getByLabel("House template").selectOption({ label: "Policy notice" });
  await page.getByLabel(/^Message/).fill("The canteen is **closed** on Friday.\n\n- bring lunch\n- or order in");
  await page.getByRole("button", { name: "Save draft" }).click();
  await page.waitForURL(/\/messages\/\d+\/edit\?done=saved$/);
  const id = /\/messages\/(\d+)\//.exec(page.url())![1]!;
  expect(await page.locator("#compose-notice").textContent()).toBe("Draft saved as revision 1.");
  expect(await page.locator('[data-field="recipients"]').textContent()).toBe("3 recipients");

  // Reloaded, every field is as it was typed.
  await page.reload();
  expect(await page.getByLabel("Subject").inputValue()).toBe("Canteen closed on Friday");
  expect(await page.getByRole("checkbox", { name: /team/ }).isChecked()).toBe(true);
  expect(await page.getByLabel("House template").inputValue()).toBe("policy-notice");
  expect(await page.getByLabel(/^Message/).inputValue()).toBe("The canteen is **closed** on Friday.\n\n- bring lunch\n- or order in");
  // The saved revision's preview: both parts as built for sending.
  await expect.poll(() => page.frameLocator("#preview-html").locator("body").textContent()).toContain("closed");
  expect(await page.locator("#preview-text").textContent()).toContain("bring lunch");

  // Typing: the preview follows (unsaved), and leaving asks first.
  await page.getByLabel(/^Message/).press("End");
  await page.getByLabel(/^Message/).pressSequentially("\n- or eat at home");
  await expect.poll(() => page.locator("#preview-text").textContent(), { timeout: 5_000 }).toContain("or eat at home");
  await expect.poll(() => page.frameLocator("#preview-html").locator("body").textContent(), { timeout: 5_000 }).toContain("or eat at home");
  expect(await page.locator('[data-field="preview-label"]').textContent()).toContain("not saved");
  let warned = false;
  page.once("dialog", (d) => {
    warned = d.type() === "beforeunload";
    void d.dismiss();
  });
  await page.getByRole("link", { name: "My messages", exact: true }).click();
  await expect.poll(() => warned).toBe(true);
  expect(page.url()).toContain(`/messages/${id}/edit`);

  // Send me a test: the draft is saved first, and the test goes to the author alone.
  await page.getByRole("button", { name: "Send me a test" }).click();
  await page.waitForURL(/\?done=tested$/);
  expect(await page.locator("#compose-notice").textContent()).toBe(`Test of revision 2 sent to ${USERS.author.email} only, its subject marked [TEST].`);
  const test = await a.until("the test mail", () => a.sink.received.find((r) => r.mail.subject === "[TEST] Canteen closed on Friday"));
  expect(test.to).toEqual([USERS.author.email]);
  expect(test.mail.text).toContain("or eat at home");

  // Submit; an approver approves this revision and its digest; the hold passes; it goes out.
  await page.getByRole("button", { name: "Submit for approval" }).click();
  await page.waitForURL(/\?done=submitted$/);
  const m = (await a.call("author", "GET", `/api/messages/${id}`)).body;
  expect(m).toMatchObject({ state: "pending_approval", revision: 2, template: "policy-notice" }); // the tested revision, submitted as it is
  const preview = await page.request.get(`${a.url}/api/messages/${id}/preview?part=text`); // with the session cookie
  expect(preview.headers()["airlock-digest"]).toBe(m.digest);
  const previewText = await preview.text();
  expect(lf((await page.locator("#preview-text").textContent())!)).toBe(previewText);
  expect((await a.call("approver1", "POST", `/api/messages/${id}/approve`, { revision: m.revision, digest: m.digest })).status).toBe(200);
  const arrived = await a.until("the message at the sink", () => a.sink.received.find((r) => r.mail.subject === "Canteen closed on Friday" && r.to.includes(TEAM[0]!)), 20_000);
  expect(lf(arrived.mail.text ?? "")).toBe(previewText);
  expect(a.sink.received.filter((r) => r.mail.subject?.includes("[TEST]")).flatMap((r) => r.to)).toEqual([USERS.author.email]);
  expect(problems).toEqual([]);
  await page.context().close();
});

it("keeps what was typed when the form is refused, the error at its field; works with the keyboard", async () => {
  const { page, problems } = await signedIn("author");
  await page.goto(`${a.url}/compose`);
  await page.getByLabel("Subject").focus();
  await page.keyboard.type("Parking rules");
  await page.getByLabel(/Explicit addresses/).fill("dee@corp.example\nnot-an-address");
  await page.getByLabel(/^Message/).fill("Park **only** in the marked bays.");
  // To the submit button and press it, as a keyboard user would.
  await page.getByRole("button", { name: "Submit for approval" }).focus();
  await page.keyboard.press("Enter");
  await page.waitForLoadState();
  const error = page.locator("#addresses-error");
  expect(await error.getAttribute("role")).toBe("alert");
  expect(await error.textContent()).toContain("not-an-address");
  expect(await page.getByLabel(/Explicit addresses/).getAttribute("aria-describedby")).toBe("addresses-error");
  expect(await page.getByLabel("Subject").inputValue()).toBe("Parking rules");
  expect(await page.getByLabel(/Explicit addresses/).inputValue()).toBe("dee@corp.example\nnot-an-address");
  expect(await page.getByLabel(/^Message/).inputValue()).toBe("Park **only** in the marked bays.");
  expect((await a.call("author", "GET", "/api/messages?state=pending_approval")).body.items.map((x: { subject: string }) => x.subject)).not.toContain("Parking rules");
  // The refused form is answered 400 (Chromium logs that); nothing else went wrong.
  expect(problems.filter((p) => !p.includes("status of 400"))).toEqual([]);
  await page.context().close();
});
