/**
 * "My messages": the signed-in author's drafts, messages waiting for approval, scheduled or going
 * out, and recent ones, each linking to where its author acts on it (edit, or its page).
 */
import { Router } from "express";
import { z } from "zod";
import { DRAFT_STATES, HISTORY_STATES, PENDING_STATES, type State } from "../../domain/lifecycle.js";
import type { Message } from "../../domain/message.js";
import { sameIdentity } from "../../domain/policies.js";
import { STATE_LABELS } from "../../notify/format.js";
import { searchMessages, type MessageRow } from "../../store/message-search.js";
import { sessionOf } from "./guards.js";
import { one, type DashboardDeps, type PageKit } from "./page-kit.js";
import { formatNumber } from "./view-model.js";

/** Messages read per state (everyone's: the state index has no author); more is said on the page. */
const PER_STATE = 500;
const RECENT = 20;
/** Its author may change these from the compose page. */
const EDITABLE: readonly State[] = ["draft", "pending_approval", "rejected"];

const doneQuery = z.enum(["discarded"]).optional().catch(undefined);

export function mineRoutes(d: DashboardDeps, k: PageKit): Router {
  const r = Router();

  r.get("/mine", k.signedIn, async (req, res) => {
    const user = sessionOf(req)!.user;
    const mine = (m: { author: string }) => sameIdentity(m.author, user.email);
    // Drafts are in no time index (only their state's), so they are read by state like pending sends.
    const states = [...DRAFT_STATES, ...PENDING_STATES];
    const [lists, recent] = await Promise.all([
      Promise.all(states.map((state) => d.store.list({ state, limit: PER_STATE }))),
      searchMessages(d.redis, { states: HISTORY_STATES, author: user.email, cursor: 0, limit: RECENT }),
    ]);
    const truncated = lists.some((l) => l.nextCursor !== null);
    const rows = lists.flatMap((l) => l.items).filter(mine).map(row);
    const doneText = doneQuery.parse(one(req.query.done)) === "discarded" ? "Draft discarded. Its audit trail stays." : null;
    k.page(res, 200, "mine", k.frame(req, "My messages", "mine"), {
      notice: doneText,
      mayCompose: d.service.mayCompose(user),
      drafts: rows.filter((m) => m.state === "draft"),
      waiting: rows.filter((m) => m.state === "pending_approval"),
      going: rows.filter((m) => m.state !== "draft" && m.state !== "pending_approval"),
      recent: recent.items.filter(mine).map(row),
      truncated,
      perState: PER_STATE,
      historyUrl: `/history?author=${encodeURIComponent(user.email)}`,
    });
  });

  return r;
}

function row(m: Message | MessageRow) {
  const editable = EDITABLE.includes(m.state);
  return {
    id: m.id,
    subject: m.subject || "(no subject yet)",
    state: m.state,
    stateLabel: STATE_LABELS[m.state] ?? m.state,
    // A draft has no recipient set yet: it is frozen at submission.
    recipients: m.state === "draft" ? "counted at submission" : formatNumber(m.recipientCount),
    updatedAt: m.updatedAt,
    url: m.state === "draft" ? `/messages/${m.id}/edit` : `/messages/${m.id}`,
    editUrl: editable ? `/messages/${m.id}/edit` : null,
    discardUrl: m.state === "draft" ? `/messages/${m.id}/discard` : null,
  };
}
