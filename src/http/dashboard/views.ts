/**
 * Renders the dashboard pages from `templates/dashboard/`: a private Handlebars instance, every
 * value escaped (not strict mode: pages test optional fields with `{{#if}}`; tests cover the output). Pages are served under a CSP without inline script or style, so the
 * templates carry no `style` attribute; /static/dashboard.js adds the live parts.
 */
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import Handlebars from "handlebars";
import { registerFormatHelpers } from "../../mail/notifications.js";
import { registerMailHelpers, templatesDir } from "../../mail/render.js";
import { formatDateTime } from "../../notify/format.js";
import type { CardView } from "./view-model.js";

export const DASHBOARD_PAGES = ["signin", "pending", "message", "recall", "pause", "history", "outbox", "error", "compose", "mine", "discard", "review", "halt"] as const;
export type DashboardPage = (typeof DASHBOARD_PAGES)[number];

/** What every page's frame needs. */
export interface Frame {
  title: string;
  /** Null on the sign-in page. */
  user: { name: string; email: string; roles: string[] } | null;
  csrf: string | null;
  nav: "pending" | "history" | "outbox" | "compose" | "mine" | "none";
  canSeeQueues: boolean;
  hasOutbox: boolean;
  /** Epoch ms when the page was rendered: the client script corrects its countdowns by it. */
  serverNow: number;
}

export interface DashboardViews {
  page(page: DashboardPage, frame: Frame, data: object): string;
  /** One pending-send card alone (for the client script to swap in). */
  card(card: CardView): string;
}

export function createDashboardViews(dir = templatesDir()): DashboardViews {
  const hb = Handlebars.create();
  registerMailHelpers(hb, { inlineStyles: false });
  registerFormatHelpers(hb);
  hb.registerHelper("eq", (a: unknown, b: unknown) => a === b);
  /** `(anyOf list "a" "b")`: the list holds one of the values (a user's roles). */
  hb.registerHelper("anyOf", (list: unknown, ...rest: unknown[]) => Array.isArray(list) && rest.slice(0, -1).some((v) => list.includes(v)));
  hb.registerHelper("dateTime", (v: unknown) => {
    const ms = typeof v === "number" ? v : typeof v === "string" ? Date.parse(v) : NaN;
    return Number.isFinite(ms) ? formatDateTime(ms) : "";
  });
  hb.registerHelper("json", (v: unknown) => JSON.stringify(v ?? null));
  const folder = join(dir, "dashboard");
  for (const file of readdirSync(join(folder, "partials"))) {
    hb.registerPartial(basename(file, ".hbs"), readFileSync(join(folder, "partials", file), "utf8"));
  }
  const pages = Object.fromEntries(DASHBOARD_PAGES.map((p) => [p, hb.compile(readFileSync(join(folder, `${p}.hbs`), "utf8"), { strict: false })])) as Record<
    DashboardPage,
    Handlebars.TemplateDelegate
  >;
  const card = hb.compile("{{> card}}");
  return {
    page: (page, frame, data) => pages[page]({ ...data, frame }),
    card: (c) => card(c),
  };
}
