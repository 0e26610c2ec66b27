/** Debian's chromium, headless, driven by playwright-core (never a downloaded browser; see TOOLCHAIN.md). */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium, type Browser, type Page } from "playwright-core";

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * axe-core's WCAG 2.1 A/AA findings on the page, as `rule: targets`; with `seriousOnly`, only the
 * serious and critical ones. Frames are left out: the preview frame holds the mail, not the page.
 * The page's context needs `bypassCSP: true` (the injected script is refused otherwise, rightly).
 */
export async function axeViolations(page: Page, opts: { seriousOnly?: boolean } = {}): Promise<string[]> {
  await page.evaluate(axeSource);
  const result = await page.evaluate(async () => {
    const run = (window as unknown as { axe: { run(ctx: Document, opts: object): Promise<{ violations: Array<{ id: string; impact: string; nodes: Array<{ target: string[] }> }> }> } }).axe;
    return run.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] }, iframes: false });
  });
  return result.violations
    .filter((v) => !opts.seriousOnly || v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
}

/**
 * A new browser context signed in to the dashboard at `baseUrl` with an API token (the token
 * sign-in), on the front page; `problems` collects console errors (CSP violations land there) and
 * page errors.
 */
export async function signedInWithToken(
  browser: Browser,
  baseUrl: string,
  token: string,
  opts: { width?: number; bypassCSP?: boolean } = {},
): Promise<{ page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width: opts.width ?? 1280, height: 900 }, bypassCSP: opts.bypassCSP ?? false });
  const page = await context.newPage();
  const problems: string[] = [];
  page.on("console", (msg) => msg.type() === "error" && problems.push(msg.text()));
  page.on("pageerror", (e) => problems.push(e.message));
  await page.goto(`${baseUrl}/signin`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${baseUrl}/`);
  return { page, problems };
}
