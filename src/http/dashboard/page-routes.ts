/** The pages to read: pending sends (and one card of it), a message with its recipients and trail, the history. */
import { Router } from "express";
import type { Queue } from "bullmq";
import { z } from "zod";
import { HISTORY_STATES, PENDING_STATES } from "../../domain/lifecycle.js";
import type { Message } from "../../domain/message.js";
import { audienceDomains, originalAsSent } from "../../notify/as-sent.js";
import { diffRevisions } from "../../notify/diff.js";
import { formatDuration, STATE_LABELS } from "../../notify/format.js";
import type { SentMail } from "../../notify/notification-data.js";
import { frozenAudiences } from "../../notify/summary.js";
import { searchMessages } from "../../store/message-search.js";
import type { MessageStore } from "../../store/message-store.js";
import { sessionOf } from "./guards.js";
import { DASHBOARD_CSP, one, type DashboardDeps, type PageKit } from "./page-kit.js";
import { DECISIONS_DONE, decisionNotice } from "./review-routes.js";
import { cardView, pendingOrder, purgeView, reviewPath } from "./view-model.js";
import { evidenceView } from "./waves-view.js";
import { MAX_EVIDENCE } from "../../waves/signals.js";

const PAGE_SIZE = 50;
/** Revisions shown with their diffs on the message page; older ones are in the API (GET /api/messages/:id/revisions). */
const REVISIONS_SHOWN = 10;
/** More than this many messages in one pending state is an incident in itself; the page says so. */
const PENDING_PER_STATE = 200;

export function pageRoutes(d: DashboardDeps, k: PageKit): Router {
  const r = Router();

  // ---- pending sends
  r.get("/", k.signedIn, async (req, res) => {
    const user = sessionOf(req)!.user;
    const now = d.clock.now();
    const lists = await Promise.all(PENDING_STATES.map((state) => d.store.list({ state, limit: PENDING_PER_STATE })));
    const truncated = lists.some((l) => l.nextCursor !== null);
    // The order is pendingOrder's (urgency, then release time), never the order of PENDING_STATES.
    const cards = lists
      .flatMap((l) => l.items)
      .map((m) => cardView(m, now, d.service.mayRecall(user, m), d.service.mayPause(user), d.service.awaitingDecisionOf(user, m)))
      .sort(pendingOrder);
    // The banner at the top: what goes out now or within minutes (its countdowns tick client-side).
    const imminent = cards
      .filter((c) => (c.urgency === "imminent" || c.urgency === "live") && c.state !== "correcting")
      .map((c) => ({
        subject: c.subject,
        live: c.urgency === "live",
        // A staged send: halted (its rest waits for a person), or in the wait before its rest (counting down to it).
        halted: c.waves !== null && c.paused !== null,
        restAt: c.waves !== null && c.countdownAt !== null && c.state === "sending" ? c.countdownAt : null,
        releaseAt: c.releaseAt,
        countdown: c.headlineCountdown,
        people: c.recipientCount,
      }));
    const queues = await queueHealth(d.queues);
    k.page(res, 200, "pending", k.frame(req, "Pending sends", "pending"), { cards, imminent, truncated, perState: PENDING_PER_STATE, queues: queues.rows, queuesError: queues.error });
  });

  /** One card as HTML, for the client script to swap in when an event names the message. */
  r.get("/fragments/card/:id", k.signedIn, async (req, res) => {
    const m = await k.messageOr404(req);
    res.set({ "Cache-Control": "no-store", "Content-Security-Policy": DASHBOARD_CSP }).type("html").send(d.views.card(k.card(req, m)));
  });

  // ---- one message
  r.get("/messages/:id", k.signedIn, async (req, res) => {
    const m = await k.messageOr404(req);
    const q = z
      .object({
        status: z.enum(["queued", "sent", "failed", "skipped"]).optional().catch(undefined),
        cursor: z.coerce.number().int().min(0).max(1e9).catch(0),
        done: z.enum(DECISIONS_DONE).optional().catch(undefined),
      })
      .parse({ status: one(req.query.status) || undefined, cursor: one(req.query.cursor) ?? "0", done: one(req.query.done) || undefined });
    const user = sessionOf(req)!.user;
    const awaiting = d.service.awaitingDecisionOf(user, m);
    const [recipients, events, revisions, sent, domains, evidence] = await Promise.all([
      d.store.recipients(m, { status: q.status, cursor: q.cursor, limit: PAGE_SIZE }),
      d.store.events(m.id),
      revisionHistory(d.store, m),
      asSent(d, m),
      frozenAudiences(d.store, m).then((f) => audienceDomains((name) => d.audiences.domains(name), f.audiences)),
      // A staged send's signals, newest first: what the early waves' recipients showed.
      m.waves ? d.service.signals(user, m.id) : Promise.resolve([]),
    ]);
    const base = `/messages/${m.id}${q.status ? `?status=${q.status}&` : "?"}`;
    k.page(res, 200, "message", k.frame(req, m.subject || `Message ${m.id}`, "none"), {
      m,
      card: k.card(req, m),
      purge: m.purge && purgeView(m.purge),
      evidence: evidence.map(evidenceView),
      evidenceKept: MAX_EVIDENCE,
      // After a decision on the review page (a redirect here); and what waits for this viewer's approval.
      notice: q.done ? decisionNotice(q.done, m) : null,
      review: awaiting === null ? null : { href: reviewPath(m.id, awaiting), isCorrection: awaiting === "correction" },
      // Both parts and the digest exactly as the fan-out builds them; the HTML part is the sandboxed frame.
      sent: "mail" in sent ? sent.mail : null,
      buildError: "error" in sent ? sent.error : null,
      // What would be sent now is not what was submitted (and approved): it will not go out.
      digestMismatch: "mail" in sent && m.digest !== "" && m.digest !== sent.mail.digest,
      domains,
      holdLabel: formatDuration(m.holdSeconds),
      revisions: revisions.items,
      olderRevisions: revisions.older ? `GET /api/messages/${m.id}/revisions?cursor=${revisions.items.at(-1)?.revision ?? ""}` : null,
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

  // ---- history
  r.get("/history", k.signedIn, async (req, res) => {
    const q = z
      .object({
        q: z.string().max(200),
        author: z.string().max(200),
        state: z.enum(HISTORY_STATES).optional().catch(undefined),
        cursor: z.coerce.number().int().min(0).max(1e12).catch(0),
      })
      .safeParse({ q: one(req.query.q) ?? "", author: one(req.query.author) ?? "", state: one(req.query.state) || undefined, cursor: one(req.query.cursor) ?? "0" });
    if (!q.success) return k.refusePage(req, res, 400, "Search words too long", "Search with at most 200 characters for the subject and for the author.");
    const found = await searchMessages(d.redis, { states: q.data.state ? [q.data.state] : HISTORY_STATES, subject: q.data.q, author: q.data.author, cursor: q.data.cursor, limit: 25 });
    const params = new URLSearchParams({ ...(q.data.q ? { q: q.data.q } : {}), ...(q.data.author ? { author: q.data.author } : {}), ...(q.data.state ? { state: q.data.state } : {}) });
    if (found.nextCursor !== null) params.set("cursor", String(found.nextCursor));
    k.page(res, 200, "history", k.frame(req, "History", "history"), {
      q: q.data.q,
      author: q.data.author,
      states: HISTORY_STATES.map((s) => ({ value: s, label: STATE_LABELS[s] ?? s, selected: q.data.state === s })),
      items: found.items.map((m) => ({ ...m, stateLabel: STATE_LABELS[m.state] ?? m.state })),
      scanned: found.scanned,
      scannedAll: found.nextCursor === null,
      nextUrl: found.nextCursor === null ? null : `/history?${params.toString()}`,
    });
  });

  return r;
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

/** The message as it goes out, or why it cannot be built (a draft still incomplete, or a stored field changed behind Airlock's back). */
async function asSent(d: DashboardDeps, m: Message): Promise<{ mail: SentMail } | { error: string }> {
  try {
    return { mail: await originalAsSent(d.renderer, m, new Date(d.clock.now())) };
  } catch (e) {
    return { error: (e as Error).message };
  }
}

/**
 * The newest REVISIONS_SHOWN revisions with what each changed from the one before (read one more
 * for the oldest one's diff): a page holds a bounded number of bodies, however often the message
 * was edited. Older ones are in GET /api/messages/:id/revisions.
 */
async function revisionHistory(store: MessageStore, m: Message): Promise<{ items: Array<{ revision: number; subject: string; first: boolean; changes: ReturnType<typeof diffRevisions> }>; older: boolean }> {
  const page = await store.revisionPage(m.id, { limit: REVISIONS_SHOWN + 1 });
  const snaps = page.items; // newest first
  const shown = Math.min(snaps.length, REVISIONS_SHOWN);
  const items = [];
  for (let i = 0; i < shown; i++) {
    const cur = snaps[i]!;
    const prev = snaps[i + 1] ?? null;
    items.push({ revision: Number(cur.revision), subject: String(cur.subject ?? ""), first: prev === null && page.nextCursor === null, changes: prev ? diffRevisions(prev as never, cur as never) : [] });
  }
  return { items, older: snaps.length > shown || page.nextCursor !== null };
}
