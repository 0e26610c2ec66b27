/**
 * A staged send on the dashboard (issue 16), in a real headless Chromium: the on-call operator
 * sees a large message in the wait after its canary (which wave, the sizes, the countdown to the
 * rest, the signals against their thresholds), halts it from the dashboard (nothing more reaches
 * SMTP, even after the wait's end), then continues it and the rest goes out, once each. Reports
 * from the canary's recipients halt another one by themselves: the card says so and the message
 * page lists what they wrote. The pages involved pass axe.
 */
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, expect, it } from "vitest";
import { axeViolations, launchChromium, signedInWithToken } from "../support/browser.js";
import { startAirlock, tokenOf, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";

const RECIPIENTS = 200;
const SUBJECT = "New expense policy";
let a: TestAirlock;
let browser: Browser;
const audience = Array.from({ length: RECIPIENTS }, (_, i) => `staff${String(i).padStart(3, "0")}@corp.example`);

beforeAll(async () => {
  [a, browser] = await Promise.all([
    startAirlock({
      HOLD_MIN_SECONDS: "1",
      // Waves from 100 recipients: a seed cohort, a canary of 10% (20), then 36 s of wait: long enough to watch and halt on a busy machine.
      WAVES_THRESHOLD: "100",
      CANARY_PERCENT: "10",
      CANARY_MIN_RECIPIENTS: "5",
      CANARY_WAIT_MINUTES: "0.6",
      SIGNAL_REPORTS: "3",
      SEND_RATE_PER_SECOND: "400",
      RECIPIENTS_PER_TRANSACTION: "5",
    }),
    launchChromium(),
  ]);
  expect((await a.call("author", "POST", "/api/audiences", { name: "staff", recipients: audience.map((email) => ({ email })) })).status).toBe(201);
});
afterAll(async () => {
  await browser?.close();
  await a?.stop();
});

function signedInPage(user: UserKey, opts: { width?: number; bypassCSP?: boolean } = {}): Promise<{ page: Page; problems: string[] }> {
  return signedInWithToken(browser, a.url, tokenOf(user), opts);
}

/** Every recipient of the original (not a notification) handed to SMTP so far. */
const originalRecipients = (messageId: string) => a.sink.received.filter((r) => r.mail.messageId === messageId.replace(/^<|>$/g, "") || r.mail.messageId === messageId).flatMap((r) => r.to);

/** Submits and approves a staged message to the staff; answers it once in the wait after its canary. */
async function inTheWait(subject: string): Promise<any> {
  const created = await a.call("author", "POST", "/api/messages", { subject, text: "From Monday, expenses go through the new tool.", audience: { lists: ["staff"] } });
  expect(created.status).toBe(201);
  expect(created.body.waves).toMatchObject({ phase: "approval" }); // staged: over WAVES_THRESHOLD
  const id = created.body.id as string;
  expect((await a.call("approver1", "POST", `/api/messages/${id}/approve`, { revision: 1 })).status).toBe(200);
  return a.until("the wait after the canary", async () => {
    const m = (await a.call("ops", "GET", `/api/messages/${id}`)).body;
    return m.waves?.phase === "wait" && m.waves.waitUntil ? m : undefined;
  });
}

it("shows the wait with its countdown and sizes; ops halt it, then continue it, and the rest goes out once", async () => {
  // The engine reaches the wait after the canary; the server renders it (no script needed for the text).
  const waiting = await inTheWait(SUBJECT);
  const id = waiting.id as string;
  const w = waiting.waves;
  expect(w.seed + w.canary + w.rest).toBeGreaterThanOrEqual(RECIPIENTS);
  expect(w.canary).toBe(20);
  const sentBeforeHalt = new Set(originalRecipients(waiting.messageId));
  expect(sentBeforeHalt.size).toBeGreaterThan(0);
  expect(sentBeforeHalt.size).toBeLessThan(RECIPIENTS);

  const { page, problems } = await signedInPage("ops");
  await page.goto(`${a.url}/`); // a fresh render in the wait
  const card = page.locator(`[data-message="${id}"]`);
  const headline = card.locator(".headline");
  expect(await headline.textContent()).toMatch(new RegExp(`^Waiting for signals: \\d+ of ${RECIPIENTS} people have it; the rest goes out in \\d+ seconds?$`));
  const waves = card.locator('[data-field="waves"]');
  expect(await waves.getAttribute("data-phase")).toBe("wait");
  expect(await waves.getByRole("heading").first().textContent()).toBe("Staged send: waiting for signals before the rest");
  expect(await waves.locator('[data-step="canary"]').textContent()).toContain(`Canary (done): ${w.canary} recipients`);
  expect(await waves.locator('[data-step="rest"]').textContent()).toContain(`The rest (not started): ${w.rest} recipients`);
  expect(await waves.locator('[data-step="wait"]').getAttribute("aria-current")).toBe("step");
  expect(await waves.locator('[data-signal="report"]').textContent()).toBe("0 / 3");
  expect(await waves.locator('[data-signal="reply"]').textContent()).toMatch(/^0 \/ \d+$/);
  // The countdown ticks client-side.
  const first = await headline.textContent();
  await expect.poll(() => headline.textContent(), { timeout: 5_000 }).not.toBe(first);
  expect(await card.getByRole("link", { name: "Pause…" }).count()).toBe(0);

  // Halt: a confirmation page, a reason, then the POST.
  await card.getByRole("link", { name: "Halt…" }).click();
  await page.waitForURL(`${a.url}/messages/${id}/halt`);
  expect(await page.getByRole("heading", { level: 1 }).textContent()).toBe(`Halt “${SUBJECT}”?`);
  await page.getByLabel(/Why are you halting it/).fill("A manager says the amounts are wrong <b>check</b>");
  await page.getByRole("button", { name: "Halt", exact: true }).click();
  await page.waitForURL(`${a.url}/messages/${id}`);
  const banner = page.locator(`[data-message="${id}"] [data-field="paused"]`);
  expect(await banner.textContent()).toMatch(/^Halted: A manager says the amounts are wrong <b>check<\/b> \(by ops@corp\.example at .+\)$/);
  const halted = (await a.call("ops", "GET", `/api/messages/${id}`)).body;
  expect(halted.paused).toMatchObject({ by: USERS.ops.email, reason: "halted: A manager says the amounts are wrong <b>check</b>" }); // MessageService.halt names it
  expect(await page.locator("#signals-title").textContent()).toBe("Signals from the early waves");
  expect(await page.locator("#no-signals").textContent()).toBe("No signal so far.");

  // Past the end of the wait, a halted send hands nobody of the rest to SMTP (promise 9).
  const handedAtHalt = originalRecipients(halted.messageId).length;
  await a.until("the end of the wait to pass", () => Date.now() > Date.parse(w.waitUntil) + 3_000, 60_000);
  const still = (await a.call("ops", "GET", `/api/messages/${id}`)).body;
  expect(still).toMatchObject({ state: "sending", paused: { by: USERS.ops.email } });
  expect(still.waves.startedAt.rest).toBeNull();
  expect(originalRecipients(halted.messageId).length).toBe(handedAtHalt);

  // Continue: a confirmation page, then the POST; the rest goes out.
  await page.goto(`${a.url}/messages/${id}`);
  await page.locator(`[data-message="${id}"]`).getByRole("link", { name: "Continue…" }).click();
  await page.waitForURL(`${a.url}/messages/${id}/continue`);
  expect(await page.getByRole("heading", { level: 1 }).textContent()).toBe(`Continue “${SUBJECT}”?`);
  expect(await page.locator(".lead").textContent()).toContain("lifts the halt and starts the last wave now");
  await page.getByRole("button", { name: "Continue: send to the rest" }).click();
  await page.waitForURL(`${a.url}/messages/${id}`);

  const sent = await a.until("every recipient sent", async () => {
    const m = (await a.call("ops", "GET", `/api/messages/${id}`)).body;
    return m.state === "sent" ? m : undefined;
  });
  expect(sent.paused).toBeNull();
  expect(sent.counts.sent).toBe(RECIPIENTS);
  const all = originalRecipients(sent.messageId).filter((r) => audience.includes(r));
  expect(all).toHaveLength(RECIPIENTS); // each audience member once
  expect(new Set(all).size).toBe(RECIPIENTS);
  // The message page's card follows live to the end.
  const messageCard = page.locator(`[data-message="${id}"]`);
  await expect.poll(() => messageCard.getAttribute("data-state"), { timeout: 15_000 }).toBe("sent");
  await expect.poll(() => messageCard.locator('[data-field="wavePhase"]').textContent(), { timeout: 5_000 }).toBe("every wave went out");
  expect(await messageCard.getByRole("link", { name: /Halt…|Continue…/ }).count()).toBe(0);
  expect(problems).toEqual([]);
  await page.context().close();

  // The pages of a staged send pass axe (in a context that lets the test inject it).
  const { page: axePage } = await signedInPage("ops", { bypassCSP: true });
  for (const path of [`/messages/${id}`, `/messages/${id}/halt`, `/messages/${id}/continue`, "/"]) {
    await axePage.goto(a.url + path);
    expect(await axeViolations(axePage), path).toEqual([]);
  }
  await axePage.context().close();
}, 150_000); // the wait after the canary is watched to its end: ~40 s of the test

it("offers an author neither Halt nor Continue, and refuses the pages", async () => {
  const created = await a.call("author", "POST", "/api/messages", { subject: "Staged, not yours to halt", text: "x", audience: { lists: ["staff"] } });
  expect(created.body.waves).toMatchObject({ phase: "approval" });
  const id = created.body.id as string;
  const { page, problems } = await signedInPage("author");
  await page.goto(`${a.url}/messages/${id}`);
  expect(await page.getByRole("link", { name: /Halt…|Continue…/ }).count()).toBe(0);
  await page.goto(`${a.url}/messages/${id}/halt`);
  expect(await page.locator("main").textContent()).toContain("Halting and continuing a staged send is for the ops and admin roles");
  expect(await page.getByRole("button", { name: "Halt", exact: true }).count()).toBe(0);
  expect(problems).toEqual([]);
  await page.context().close();
  expect((await a.call("author", "POST", `/api/messages/${id}/withdraw`)).status).toBe(200);
});

it("shows a halt by the canary's reports, and what the reporters wrote", async () => {
  const waiting = await inTheWait("Canteen menu");
  const id = waiting.id as string;
  // Three recipients of the canary click "Report a problem" in the mail (each its own browser: one report per browser).
  const notes = ["The prices are wrong", "Wrong <script>alert(1)</script> menu", ""];
  for (const note of notes) {
    const context = await browser.newContext();
    const reporter = await context.newPage();
    await reporter.goto(`${a.url}/report/${a.rt.reportLinks.token(id)}`);
    if (note) await reporter.getByLabel(/What is wrong/).fill(note);
    await reporter.getByRole("button", { name: "Report the problem" }).click();
    await reporter.waitForLoadState();
    await context.close();
  }
  const halted = await a.until("the halt by the reports", async () => {
    const m = (await a.call("ops", "GET", `/api/messages/${id}`)).body;
    return m.paused && m.waves.haltedBy ? m : undefined;
  });
  expect(halted).toMatchObject({ state: "sending", paused: { by: "airlock" }, waves: { haltedBy: { kind: "report", count: 3 }, signals: { reports: 3 } } });

  const { page, problems } = await signedInPage("ops");
  await page.goto(`${a.url}/messages/${id}`);
  const card = page.locator(`[data-message="${id}"]`);
  expect(await card.locator(".headline").textContent()).toMatch(new RegExp(`^Halted by Airlock during the wait: \\d+ of ${RECIPIENTS} people have it, the rest wait$`));
  expect(await card.locator('[data-field="paused"]').textContent()).toMatch(/^Halted: signal: .+ \(by Airlock at .+, on 3 problem reports at .+\)$/);
  expect(await card.locator('[data-signal="report"]').textContent()).toBe("3 / 3 — halted the send");
  expect(await card.locator('[data-step="wait"]').textContent()).toContain("Wait (halted)");
  expect(await card.getByRole("link", { name: "Halt…" }).count()).toBe(0);
  expect(await card.getByRole("link", { name: "Continue…" }).count()).toBe(1);
  // The evidence, newest first, the notes as written (escaped: text, never markup).
  const rows = page.locator(".evidence tbody tr");
  expect(await rows.count()).toBe(3);
  expect(await rows.locator("td:nth-child(2)").allTextContents()).toEqual(["Problem report", "Problem report", "Problem report"]);
  expect(await page.locator(".evidence blockquote").allTextContents()).toEqual(["Wrong <script>alert(1)</script> menu", "The prices are wrong"]);
  expect(await page.locator(".evidence script").count()).toBe(0);
  expect(problems).toEqual([]);
  await page.context().close();
  expect((await a.call("ops", "POST", `/api/messages/${id}/recall`, { reason: "The menu was wrong" })).status).toBe(200);
}, 120_000);
