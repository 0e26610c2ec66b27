/**
 * The forms that change a message: recall (a confirmation step: reason, optional correction text,
 * who would get it), pause and resume, and halt and continue of a staged send. Each form is read with the API's own schema, so the rules
 * are the same whichever way a person acts; its errors are shown on the form.
 */
import { Router, type Request } from "express";
import type { z } from "zod";
import type { Message } from "../../domain/message.js";
import { continueInput, pauseInput, recallInput } from "../../domain/message-input.js";
import { sessionOf } from "./guards.js";
import { form, one, type DashboardDeps, type PageKit } from "./page-kit.js";
import { formatNumber } from "./view-model.js";

const REASON_MAX = formatNumber(recallInput.shape.reason.maxLength ?? 0);
const CORRECTION_MAX = formatNumber(recallInput.shape.correctionText.unwrap().maxLength ?? 0);
const PAUSE_REASON_MAX = formatNumber(pauseInput.shape.reason.maxLength ?? 0);

/** The schema refused the reason for being blank (after trimming), rather than too long. */
const blankReason = (e: z.ZodError) => e.issues.some((i) => i.path[0] === "reason" && i.code === "too_small");

export function formRoutes(d: DashboardDeps, k: PageKit): Router {
  const r = Router();

  // ---- recall
  r.get("/messages/:id/recall", k.signedIn, async (req, res) => {
    const m = await k.messageOr404(req);
    k.page(res, 200, "recall", k.frame(req, `Recall ${m.subject}`, "none"), recallData(req, m, { reason: "", correctionText: "" }, null));
  });

  r.post("/messages/:id/recall", form, k.signedIn, k.csrf, async (req, res) => {
    const m = await k.messageOr404(req);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const values = { reason: one(body.reason) ?? "", correctionText: one(body.correctionText) ?? "" };
    // A blank correction box means no correction text.
    const input = recallInput.safeParse({ reason: values.reason, ...(values.correctionText.trim() ? { correctionText: values.correctionText } : {}) });
    if (!input.success) {
      const why = blankReason(input.error)
        ? "Say why you are recalling it: the reason is recorded and shown to the author and approvers."
        : `The reason may have at most ${REASON_MAX} characters and the correction ${CORRECTION_MAX}.`;
      return k.page(res, 400, "recall", k.frame(req, `Recall ${m.subject}`, "none"), recallData(req, m, values, why));
    }
    await d.service.recall(sessionOf(req)!.user, m.id, input.data);
    res.redirect(303, `/messages/${m.id}#recall-title`);
  });

  // ---- pause / resume a running fan-out (ops, admin): one page, the form that applies now
  r.get("/messages/:id/pause", k.signedIn, async (req, res) => {
    const m = await k.messageOr404(req);
    k.page(res, 200, "pause", k.frame(req, `Pause ${m.subject}`, "none"), pauseData(req, m, "", null));
  });

  r.post("/messages/:id/pause", form, k.signedIn, k.csrf, async (req, res) => {
    const m = await k.messageOr404(req);
    const reason = one(((req.body ?? {}) as Record<string, unknown>).reason) ?? "";
    const input = pauseInput.safeParse({ reason });
    if (!input.success) {
      const why = blankReason(input.error)
        ? "Say why you are pausing it: the reason is shown on the dashboard and kept in the audit trail."
        : `The reason may have at most ${PAUSE_REASON_MAX} characters.`;
      return k.page(res, 400, "pause", k.frame(req, `Pause ${m.subject}`, "none"), pauseData(req, m, reason, why));
    }
    await d.service.pause(sessionOf(req)!.user, m.id, input.data);
    res.redirect(303, `/messages/${m.id}`);
  });

  r.post("/messages/:id/resume", form, k.signedIn, k.csrf, async (req, res) => {
    const m = await k.messageOr404(req);
    await d.service.resume(sessionOf(req)!.user, m.id);
    res.redirect(303, `/messages/${m.id}`);
  });

  // ---- halt / continue a staged send (ops, admin): a confirmation page each, then the POST
  r.get("/messages/:id/halt", k.signedIn, async (req, res) => {
    const m = await k.messageOr404(req);
    k.page(res, 200, "halt", k.frame(req, `Halt ${m.subject}`, "none"), haltData(req, m, "halt", "", null));
  });

  r.post("/messages/:id/halt", form, k.signedIn, k.csrf, async (req, res) => {
    const m = await k.messageOr404(req);
    const reason = one(((req.body ?? {}) as Record<string, unknown>).reason) ?? "";
    const input = pauseInput.safeParse({ reason });
    if (!input.success) {
      const why = blankReason(input.error)
        ? "Say why you are halting it: the reason is shown on the dashboard, sent to those told of the halt and kept in the audit trail."
        : `The reason may have at most ${PAUSE_REASON_MAX} characters.`;
      return k.page(res, 400, "halt", k.frame(req, `Halt ${m.subject}`, "none"), haltData(req, m, "halt", reason, why));
    }
    await d.service.halt(sessionOf(req)!.user, m.id, input.data);
    res.redirect(303, `/messages/${m.id}`);
  });

  r.get("/messages/:id/continue", k.signedIn, async (req, res) => {
    const m = await k.messageOr404(req);
    k.page(res, 200, "halt", k.frame(req, `Continue ${m.subject}`, "none"), haltData(req, m, "continue", "", null));
  });

  r.post("/messages/:id/continue", form, k.signedIn, k.csrf, async (req, res) => {
    const m = await k.messageOr404(req);
    // The phase the page showed: a doubled or late submit of the form never moves the send on twice.
    const from = continueInput.safeParse({ from: (req.body as Record<string, unknown>)?.from });
    await d.service.continueWaves(sessionOf(req)!.user, m.id, from.success ? from.data : {});
    res.redirect(303, `/messages/${m.id}`);
  });

  return r;

  function haltData(req: Request, m: Message, mode: "halt" | "continue", reason: string, error: string | null) {
    const settled = m.counts.sent + m.counts.failed + m.counts.skipped + m.counts.inFlight;
    return {
      mode,
      card: k.card(req, m),
      notAllowed: d.service.mayPause(sessionOf(req)!.user) ? null : "Halting and continuing a staged send is for the ops and admin roles. Ask the on-call operator, or recall the message.",
      remaining: Math.max(0, m.recipientCount - settled),
      reason,
      error,
    };
  }

  function pauseData(req: Request, m: Message, reason: string, error: string | null) {
    const mayPause = d.service.mayPause(sessionOf(req)!.user);
    return {
      card: k.card(req, m),
      notAllowed: mayPause ? null : "Pausing a fan-out is for the ops and admin roles. Ask the on-call operator, or recall the message.",
      correction: m.state === "correcting",
      waiting: m.state === "correcting" ? Math.max(0, m.counts.sent - m.counts.corrected - m.counts.correctionFailed) : Math.max(0, m.counts.queued - m.counts.inFlight),
      reason,
      error,
    };
  }

  function recallData(req: Request, m: Message, values: { reason: string; correctionText: string }, error: string | null) {
    const allowed = d.service.mayRecall(sessionOf(req)!.user, m);
    const settled = m.counts.sent + m.counts.failed + m.counts.skipped + m.counts.inFlight;
    return {
      card: k.card(req, m),
      notAllowed: allowed ? null : "Authors may recall only their own messages. Ask an approver or the on-call operator.",
      wouldCorrect: m.counts.sent + m.counts.inFlight,
      stillQueued: Math.max(0, m.recipientCount - settled),
      values,
      error,
    };
  }
}
