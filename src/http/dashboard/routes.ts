/**
 * The dashboard's pages: sign-in, pending sends, a message, its recall, history, the development
 * outbox. Server-rendered; /static/dashboard.js only makes them live (SSE, countdowns). Every
 * decision goes through MessageService, exactly as the API's do; the view rules live in
 * view-model.ts.
 */
import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import express, { Router, type NextFunction, type Request, type Response } from "express";
import type { Queue } from "bullmq";
import type { Logger } from "pino";
import { z } from "zod";
import type { User } from "../../auth/users.js";
import { DomainError } from "../../domain/errors.js";
import type { Message } from "../../domain/message.js";
import { diffRevisions } from "../../notify/diff.js";
import { formatDuration, STATE_LABELS } from "../../notify/format.js";
import type { MessageService } from "../../service/message-service.js";
import { searchMessages } from "../../store/message-search.js";
import type { MessageStore } from "../../store/message-store.js";
import type { Redis } from "ioredis";
import { STATUS } from "../errors.js";
import { csrfOk, fromOwnOrigin, sessionCookie, sessionOf } from "./guards.js";
import { SESSION_COOKIE, SessionStore } from "./sessions.js";
import { cardView, HISTORY_STATES, PENDING_STATES, pendingOrder, type CardView } from "./view-model.js";
import type { DashboardPage, DashboardViews, Frame } from "./views.js";

export interface DashboardDeps {
  sessions: SessionStore;
  service: MessageService;
  store: MessageStore;
  redis: Redis;
  views: DashboardViews;
  queues: Queue[];
  outboxDir: string | null;
  publicUrl: string;
  clock: { now(): number };
  logger: Logger;
}

/** Pages are ours alone: scripts and styles from /static, the preview in a same-origin frame, SSE to ourselves. */
export const DASHBOARD_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const idParam = z.object({ id: z.string().regex(/^[1-9][0-9]{0,15}$/) });
const form = express.urlencoded({ extended: false, limit: "64kb", parameterLimit: 20 });
const one = (v: unknown) => (typeof v === "string" ? v : undefined);
const PAGE_SIZE = 50;
/** More than this many messages in one pending state is an incident in itself; the page says so. */
const PENDING_PER_STATE = 200;

const canSeeQueues = (u: User) => u.roles.includes("ops") || u.roles.includes("admin");

function frameFor(req: Request, title: string, nav: Frame["nav"], hasOutbox: boolean, now: number): Frame {
  const s = sessionOf(req);
  return {
    title,
    user: s ? { name: s.user.name, email: s.user.email, roles: s.user.roles } : null,
    csrf: s?.csrf ?? null,
    nav,
    canSeeQueues: s ? canSeeQueues(s.user) : false,
    hasOutbox: hasOutbox && s !== null && canSeeQueues(s.user),
    serverNow: now,
  };
}

function sendPage(views: DashboardViews, res: Response, status: number, view: DashboardPage, f: Frame, data: object): void {
  res.status(status).set({ "Cache-Control": "no-store", "Content-Security-Policy": DASHBOARD_CSP }).type("html").send(views.page(view, f, data));
}

/** A page saying what was refused and that nothing changed (also used by the queue board's guard). */
export function errorPage(d: Pick<DashboardDeps, "views" | "outboxDir" | "clock">, req: Request, res: Response, status: number, heading: string, detail: string): void {
  sendPage(d.views, res, status, "error", frameFor(req, heading, "none", d.outboxDir !== null, d.clock.now()), { heading, detail });
}

export function dashboardRoutes(d: DashboardDeps): Router {
  const r = Router();
  const frame = (req: Request, title: string, nav: Frame["nav"]) => frameFor(req, title, nav, d.outboxDir !== null, d.clock.now());
  const page = (res: Response, status: number, view: DashboardPage, f: Frame, data: object) => sendPage(d.views, res, status, view, f, data);
  /** Secure when this request came over TLS (through the trusted proxies) or the service is published on https. */
  const secureCookie = (req: Request) => req.secure || d.publicUrl.startsWith("https:");
  const refusePage = (req: Request, res: Response, status: number, heading: string, detail: string) => errorPage(d, req, res, status, heading, detail);

  /** Pages below need a session: a GET goes to the sign-in page and comes back; anything else is refused. */
  const signedIn = (req: Request, res: Response, next: NextFunction) => {
    const s = sessionOf(req);
    if (s) return next();
    if (req.method === "GET" || req.method === "HEAD") return res.redirect(303, `/signin?next=${encodeURIComponent(req.originalUrl)}`);
    refusePage(req, res, 401, "Signed out", "Your session has ended. Sign in again; nothing was changed.");
  };
  /** Every state-changing form: same origin and the session's CSRF token. */
  const csrf = (req: Request, res: Response, next: NextFunction) => {
    if (csrfOk(req, d.publicUrl, (req.body as Record<string, unknown> | undefined)?._csrf)) return next();
    refusePage(req, res, 403, "Refused: this form did not come from this Airlock page", "Reload the page and try again. Nothing was changed.");
  };

  // ---- sign-in and sign-out
  r.get("/signin", (req, res) => {
    if (sessionOf(req)) return res.redirect(303, safeNext(one(req.query.next)));
    page(res, 200, "signin", frame(req, "Sign in", "none"), { next: safeNext(one(req.query.next)), error: null });
  });

  r.post("/signin", form, async (req, res) => {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const next = safeNext(one(body.next));
    // No session yet, so no CSRF token: the origin check stops another site signing a browser in as someone else.
    if (!fromOwnOrigin(req, d.publicUrl)) return refusePage(req, res, 403, "Refused: sign in from the Airlock sign-in page", "Nothing was changed.");
    const token = one(body.token)?.trim() ?? "";
    const started = token.length > 0 && token.length <= 512 ? await d.sessions.start(token) : null;
    if (!started) {
      d.logger.warn({ ip: req.ip }, "dashboard sign-in refused: unknown token");
      return page(res, 401, "signin", frame(req, "Sign in", "none"), { next, error: "That token is not valid. Check it and try again." });
    }
    await d.sessions.end(sessionCookie(req)); // a new sign-in replaces the old session
    res.cookie(SESSION_COOKIE, started.id, { httpOnly: true, sameSite: "strict", secure: secureCookie(req), path: "/", maxAge: SessionStore.maxAgeMs });
    d.logger.info({ user: started.session.user.email }, "dashboard sign-in");
    res.redirect(303, next);
  });

  r.post("/signout", form, signedIn, csrf, async (req, res) => {
    await d.sessions.end(sessionCookie(req));
    res.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: "strict", secure: secureCookie(req), path: "/" });
    res.redirect(303, "/signin");
  });

  // ---- pending sends
  r.get("/", signedIn, async (req, res) => {
    const user = sessionOf(req)!.user;
    const now = d.clock.now();
    const lists = await Promise.all(PENDING_STATES.map((state) => d.store.list({ state, limit: PENDING_PER_STATE })));
    const truncated = lists.some((l) => l.nextCursor !== null);
    const cards = lists
      .flatMap((l) => l.items)
      .map((m) => cardView(m, now, d.service.mayRecall(user, m), d.service.mayPause(user)))
      .sort(pendingOrder);
    // The banner at the top: what goes out now or within minutes (its countdowns tick client-side).
    const imminent = cards
      .filter((c) => (c.urgency === "imminent" || c.urgency === "live") && c.state !== "correcting")
      .map((c) => ({ subject: c.subject, live: c.urgency === "live", releaseAt: c.releaseAt, countdown: c.headlineCountdown, people: c.recipientCount }));
    const queues = await queueHealth(d.queues);
    page(res, 200, "pending", frame(req, "Pending sends", "pending"), { cards, imminent, truncated, perState: PENDING_PER_STATE, queues: queues.rows, queuesError: queues.error });
  });

  /** One card as HTML, for the client script to swap in when an event names the message. */
  r.get("/fragments/card/:id", signedIn, async (req, res) => {
    const m = await messageOr404(req);
    res.set({ "Cache-Control": "no-store", "Content-Security-Policy": DASHBOARD_CSP }).type("html").send(d.views.card(card(req, m)));
  });

  // ---- one message
  r.get("/messages/:id", signedIn, async (req, res) => {
    const m = await messageOr404(req);
    const q = z
      .object({ status: z.enum(["queued", "sent", "failed", "skipped"]).optional().catch(undefined), cursor: z.coerce.number().int().min(0).max(1e9).catch(0) })
      .parse({ status: one(req.query.status) || undefined, cursor: one(req.query.cursor) ?? "0" });
    const [recipients, events, revisions] = await Promise.all([
      d.store.recipients(m, { status: q.status, cursor: q.cursor, limit: PAGE_SIZE }),
      d.store.events(m.id),
      revisionHistory(d.store, m),
    ]);
    const base = `/messages/${m.id}${q.status ? `?status=${q.status}&` : "?"}`;
    page(res, 200, "message", frame(req, m.subject || `Message ${m.id}`, "none"), {
      m,
      card: card(req, m),
      holdLabel: formatDuration(m.holdSeconds),
      revisions,
      recipients: recipients.items,
      filtered: q.status !== undefined,
      statusOptions: [
        { value: "", label: "All recipients", selected: !q.status },
        ...(["queued", "sent", "failed", "skipped"] as const).map((s) => ({ value: s, label: s[0]!.toUpperCase() + s.slice(1), selected: q.status === s })),
      ],
      nextUrl: recipients.nextCursor ? `${base}cursor=${recipients.nextCursor}#recipients-title` : null,
      firstUrl: q.cursor > 0 ? `${base}cursor=0#recipients-title` : null,
      events: events.reverse().map((e) => ({
        iso: new Date(Number(e.at)).toISOString(),
        action: e.action,
        actor: e.actor,
        transition: e.from && e.to && e.from !== e.to ? `${e.from} → ${e.to}` : null,
        revision: e.revision && e.revision !== "0" ? e.revision : null,
        detail: e.detail && e.detail !== "{}" && e.detail !== "" ? e.detail : null,
      })),
    });
  });

  // ---- recall: a confirmation step (reason, optional correction text, who would get it), then the action
  r.get("/messages/:id/recall", signedIn, async (req, res) => {
    const m = await messageOr404(req);
    page(res, 200, "recall", frame(req, `Recall ${m.subject}`, "none"), recallData(req, m, { reason: "", correctionText: "" }, null));
  });

  r.post("/messages/:id/recall", form, signedIn, csrf, async (req, res) => {
    const m = await messageOr404(req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const values = { reason: one(body.reason) ?? "", correctionText: one(body.correctionText) ?? "" };
    if (!values.reason.trim()) return page(res, 400, "recall", frame(req, `Recall ${m.subject}`, "none"), recallData(req, m, values, "Say why you are recalling it: the reason is recorded and shown to the author and approvers."));
    if (values.reason.length > 2000 || values.correctionText.length > 20_000) {
      return page(res, 400, "recall", frame(req, `Recall ${m.subject}`, "none"), recallData(req, m, values, "The reason may have at most 2,000 characters and the correction 20,000."));
    }
    await d.service.recall(sessionOf(req)!.user, m.id, { reason: values.reason.trim(), ...(values.correctionText.trim() ? { correctionText: values.correctionText } : {}) });
    res.redirect(303, `/messages/${m.id}#recall-title`);
  });

  // ---- pause / resume a running fan-out (ops, admin): one page, the form that applies now
  r.get("/messages/:id/pause", signedIn, async (req, res) => {
    const m = await messageOr404(req);
    page(res, 200, "pause", frame(req, `Pause ${m.subject}`, "none"), pauseData(req, m, "", null));
  });

  r.post("/messages/:id/pause", form, signedIn, csrf, async (req, res) => {
    const m = await messageOr404(req);
    const reason = one(((req.body ?? {}) as Record<string, unknown>).reason) ?? "";
    if (!reason.trim() || reason.length > 2000) {
      const why = reason.trim() ? "The reason may have at most 2,000 characters." : "Say why you are pausing it: the reason is shown on the dashboard and kept in the audit trail.";
      return page(res, 400, "pause", frame(req, `Pause ${m.subject}`, "none"), pauseData(req, m, reason, why));
    }
    await d.service.pause(sessionOf(req)!.user, m.id, { reason: reason.trim() });
    res.redirect(303, `/messages/${m.id}`);
  });

  r.post("/messages/:id/resume", form, signedIn, csrf, async (req, res) => {
    const m = await messageOr404(req);
    await d.service.resume(sessionOf(req)!.user, m.id);
    res.redirect(303, `/messages/${m.id}`);
  });

  // ---- history
  r.get("/history", signedIn, async (req, res) => {
    const q = z
      .object({
        q: z.string().max(200),
        author: z.string().max(200),
        state: z.enum(HISTORY_STATES).optional().catch(undefined),
        cursor: z.coerce.number().int().min(0).max(1e12).catch(0),
      })
      .safeParse({ q: one(req.query.q) ?? "", author: one(req.query.author) ?? "", state: one(req.query.state) || undefined, cursor: one(req.query.cursor) ?? "0" });
    if (!q.success) return refusePage(req, res, 400, "Search words too long", "Search with at most 200 characters for the subject and for the author.");
    const found = await searchMessages(d.redis, { states: q.data.state ? [q.data.state] : HISTORY_STATES, subject: q.data.q, author: q.data.author, cursor: q.data.cursor, limit: 25 });
    const params = new URLSearchParams({ ...(q.data.q ? { q: q.data.q } : {}), ...(q.data.author ? { author: q.data.author } : {}), ...(q.data.state ? { state: q.data.state } : {}) });
    if (found.nextCursor !== null) params.set("cursor", String(found.nextCursor));
    page(res, 200, "history", frame(req, "History", "history"), {
      q: q.data.q,
      author: q.data.author,
      states: HISTORY_STATES.map((s) => ({ value: s, label: STATE_LABELS[s] ?? s, selected: q.data.state === s })),
      items: found.items.map((m) => ({ ...m, stateLabel: STATE_LABELS[m.state] ?? m.state })),
      scanned: found.scanned,
      scannedAll: found.nextCursor === null,
      nextUrl: found.nextCursor === null ? null : `/history?${params.toString()}`,
    });
  });

  // ---- development outbox
  if (d.outboxDir) {
    const dir = d.outboxDir;
    // Raw mails hold approvers' working link tokens: only ops and admin may read them.
    const opsOnly = (req: Request, res: Response, next: NextFunction) =>
      canSeeQueues(sessionOf(req)!.user) ? next() : refusePage(req, res, 403, "Not allowed", "The outbox is for the ops and admin roles: its mails hold other people's links.");
    r.get("/outbox", signedIn, opsOnly, async (req, res) => {
      page(res, 200, "outbox", frame(req, "Outbox", "outbox"), { dir, limit: OUTBOX_LIMIT, items: await outboxItems(dir) });
    });
    r.get("/outbox/:name", signedIn, opsOnly, async (req, res) => {
      const name = String(req.params.name);
      if (!/^[0-9TZ-]{10,40}-[0-9]{6}$/.test(name)) return refusePage(req, res, 404, "No such mail", "That name is not one of the outbox's files.");
      const raw = await readFile(join(dir, `${name}.eml`)).catch(() => null);
      if (!raw) return refusePage(req, res, 404, "No such mail", "It may have been deleted from the outbox.");
      // Shown as text, never rendered: the raw mail is untrusted content.
      res.set({ "Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'; sandbox", "X-Content-Type-Options": "nosniff" }).type("text/plain; charset=utf-8").send(raw);
    });
  }

  // Errors of the pages above become pages too, never JSON and never a 500 for a person's mistake.
  r.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (!isPagePath(req.path)) return next(err);
    if (err instanceof DomainError) return refusePage(req, res, STATUS[err.code], headingFor(err), err.message);
    const type = (err as { type?: unknown })?.type;
    if (type === "entity.too.large") return refusePage(req, res, 413, "Too large", "The form was larger than allowed. Nothing was changed.");
    if (typeof type === "string") return refusePage(req, res, 400, "The form could not be read", "Reload the page and try again. Nothing was changed.");
    d.logger.error({ err, method: req.method, url: req.originalUrl }, "dashboard: unexpected error");
    refusePage(req, res, 500, "Something went wrong", "The error was logged. Nothing you did caused it; try again in a moment.");
  });
  return r;

  async function messageOr404(req: Request): Promise<Message> {
    const p = idParam.safeParse(req.params);
    if (!p.success) throw new DomainError("not_found", "there is no such message");
    return d.service.get(sessionOf(req)!.user, p.data.id);
  }

  function card(req: Request, m: Message): CardView {
    const user = sessionOf(req)!.user;
    return cardView(m, d.clock.now(), d.service.mayRecall(user, m), d.service.mayPause(user));
  }

  function pauseData(req: Request, m: Message, reason: string, error: string | null) {
    const c = card(req, m);
    const mayPause = d.service.mayPause(sessionOf(req)!.user);
    return {
      card: c,
      notAllowed: mayPause ? null : "Pausing a fan-out is for the ops and admin roles. Ask the on-call operator, or recall the message.",
      correction: m.state === "correcting",
      waiting: m.state === "correcting" ? Math.max(0, m.counts.sent - m.counts.corrected - m.counts.correctionFailed) : Math.max(0, m.counts.queued - m.counts.inFlight),
      reason,
      error,
    };
  }

  function recallData(req: Request, m: Message, values: { reason: string; correctionText: string }, error: string | null) {
    const user = sessionOf(req)!.user;
    const c = card(req, m);
    const allowed = d.service.mayRecall(user, m);
    const settled = m.counts.sent + m.counts.failed + m.counts.skipped + m.counts.inFlight;
    return {
      card: c,
      notAllowed: allowed ? null : "Authors may recall only their own messages. Ask an approver or the on-call operator.",
      wouldCorrect: m.counts.sent + m.counts.inFlight,
      stillQueued: Math.max(0, m.recipientCount - settled),
      values,
      error,
    };
  }
}

function isPagePath(path: string): boolean {
  return /^\/(signin|signout|history|outbox|fragments|messages)(\/|$)|^\/$/.test(path);
}

function headingFor(e: DomainError): string {
  switch (e.code) {
    case "not_found":
      return "Not found";
    case "forbidden":
    case "self_approval":
      return "Not allowed";
    case "conflict":
    case "stale_revision":
    case "already_approved":
      return "Not done: the message has moved on";
    default:
      return "Not done";
  }
}

/** Only a path on this site: `//evil.example` and `https://…` fall back to the front page. */
function safeNext(next: string | undefined): string {
  return next && /^\/(?![/\\])[\x21-\x7e]{0,500}$/.test(next) ? next : "/";
}

async function queueHealth(queues: Queue[]): Promise<{ rows: Array<{ name: string; waiting: number; active: number; delayed: number; failed: number }>; error: string | null }> {
  try {
    const rows = await Promise.all(
      queues.map(async (q) => {
        const c = await q.getJobCounts("waiting", "active", "delayed", "failed", "prioritized");
        return { name: q.name, waiting: (c.waiting ?? 0) + (c.prioritized ?? 0), active: c.active ?? 0, delayed: c.delayed ?? 0, failed: c.failed ?? 0 };
      }),
    );
    return { rows, error: null };
  } catch (e) {
    return { rows: [], error: `Queue counts unavailable: ${(e as Error).message}` };
  }
}

async function revisionHistory(store: MessageStore, m: Message): Promise<Array<{ revision: number; subject: string; changes: ReturnType<typeof diffRevisions> }>> {
  const snaps = await Promise.all(Array.from({ length: m.revision }, (_, i) => store.revisionSnapshot(m.id, i + 1)));
  const out = [];
  for (let i = snaps.length - 1; i >= 0; i--) {
    const cur = snaps[i];
    if (!cur) continue;
    const prev = i > 0 ? snaps[i - 1] : null;
    out.push({ revision: i + 1, subject: String(cur.subject ?? ""), changes: prev ? diffRevisions(prev as never, cur as never) : [] });
  }
  return out;
}

const OUTBOX_LIMIT = 100;

async function outboxItems(dir: string): Promise<Array<{ name: string; at: string; subject: string; to: string; more: number }>> {
  const names = (await readdir(dir).catch(() => [] as string[]))
    .filter((f) => f.endsWith(".json"))
    .sort()
    .reverse()
    .slice(0, OUTBOX_LIMIT)
    .map((f) => f.slice(0, -".json".length));
  return Promise.all(
    names.map(async (name) => {
      const meta = JSON.parse(await readFile(join(dir, `${name}.json`), "utf8").catch(() => "{}")) as { to?: string[]; at?: string };
      const to = meta.to ?? [];
      return { name, at: meta.at ?? "", subject: await subjectOf(join(dir, `${name}.eml`)), to: to.slice(0, 3).join(", "), more: Math.max(0, to.length - 3) };
    }),
  );
}

/** The Subject header of a raw mail, its encoded words decoded (we write UTF-8 B or Q words). */
async function subjectOf(path: string): Promise<string> {
  const fh = await open(path, "r").catch(() => null);
  if (!fh) return "";
  try {
    const buf = Buffer.alloc(16_384);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const head = buf.subarray(0, bytesRead).toString("utf8").split(/\r?\n\r?\n/)[0] ?? "";
    const m = /^Subject:(.*(?:\r?\n[ \t].*)*)/im.exec(head);
    if (!m) return "";
    return m[1]!
      .replace(/\r?\n[ \t]/g, " ")
      .replace(/\?=\s+=\?/g, "?==?")
      .replace(/=\?utf-8\?([bq])\?([^?]*)\?=/gi, (_all, enc: string, text: string) =>
        enc.toLowerCase() === "b" ? Buffer.from(text, "base64").toString("utf8") : Buffer.from(text.replace(/_/g, " ").replace(/=([0-9a-f]{2})/gi, (_x, h: string) => String.fromCharCode(parseInt(h, 16))), "latin1").toString("utf8"),
      )
      .trim();
  } finally {
    await fh.close();
  }
}
