/** /api/messages: the lifecycle over JSON. Validation here; every decision in MessageService. */
import { DomainError } from "../../domain/errors.js";
import { Router } from "express";
import { z } from "zod";
import { STATES } from "../../domain/lifecycle.js";
import { approveCorrectionInput, approveInput, continueInput, draftInput, messageInput, submitDraftInput, pauseInput, recallInput, rejectCorrectionInput, rejectInput } from "../../domain/message-input.js";
import { asSent } from "../../notify/as-sent.js";
import type { Renderer } from "../../mail/render.js";
import type { MessageService } from "../../service/message-service.js";
import type { MessageStore } from "../../store/message-store.js";
import { currentUser } from "../auth.js";
import { requireJson, validate } from "../errors.js";

const idParams = z.object({ id: z.string().regex(/^[1-9][0-9]{0,15}$/, { error: "not a message id" }) });
const cursor = z.string().regex(/^[0-9]{1,10}$/, { error: "not a cursor from a previous page" });
const listQuery = z.strictObject({
  state: z.enum(STATES).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: cursor.optional(),
});
const previewQuery = z.strictObject({
  part: z.enum(["html", "text"]).default("html"),
  of: z.enum(["original", "correction"]).default("original"),
});
const revisionsQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(10).default(5),
  cursor: cursor.optional(),
});
const recipientsQuery = z.strictObject({
  status: z.enum(["queued", "sent", "failed", "skipped"]).optional(),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: cursor.optional(),
});

export function messageRoutes(d: { service: MessageService; store: MessageStore; renderer: Renderer }): Router {
  const r = Router();
  const id = (params: unknown) => validate(idParams, params, "params").id;

  r.post("/", requireJson(), async (req, res) => {
    const isDraft = typeof req.body === "object" && req.body !== null && (req.body as { draft?: unknown }).draft === true;
    const input = isDraft ? validate(draftInput, req.body, "body") : validate(messageInput, req.body, "body");
    res.status(201).json(await d.service.create(currentUser(req), input));
  });

  r.get("/", async (req, res) => {
    const user = currentUser(req);
    const q = validate(listQuery, req.query, "query");
    const page = await d.store.list({ state: q.state, limit: q.limit, cursor: q.cursor });
    // Drafts are listed only with state=draft (they are not in the all-messages index), and only
    // to their author, ops and admins: a page may then hold fewer than `limit` items.
    res.json({ ...page, items: page.items.filter((m) => d.service.maySee(user, m)) });
  });

  /** Revision snapshots, newest first, a few at a time (each holds the bodies). */
  r.get("/:id/revisions", async (req, res) => {
    const m = await d.service.get(currentUser(req), id(req.params));
    const q = validate(revisionsQuery, req.query, "query");
    res.json(await d.store.revisionPage(m.id, { limit: q.limit, before: q.cursor === undefined ? undefined : Number(q.cursor) }));
  });

  r.post("/:id/submit", requireJson(true), async (req, res) => {
    const messageId = id(req.params);
    res.json(await d.service.submitDraft(currentUser(req), messageId, validate(submitDraftInput, req.body, "body")));
  });

  /** "Send me a test": the current revision to its author alone, subject marked [TEST] (MessageService.testSend). */
  r.post("/:id/test", requireJson(true), async (req, res) => {
    const messageId = id(req.params);
    validate(z.strictObject({}), req.body, "body");
    res.json(await d.service.testSend(currentUser(req), messageId));
  });

  r.delete("/:id", async (req, res) => {
    await d.service.discardDraft(currentUser(req), id(req.params));
    res.status(204).end();
  });

  r.get("/:id", async (req, res) => {
    res.json(await d.service.get(currentUser(req), id(req.params)));
  });

  r.put("/:id", requireJson(), async (req, res) => {
    const messageId = id(req.params);
    const user = currentUser(req);
    // A draft may be saved incomplete; a submitted message's edit is a complete new revision.
    const current = await d.service.get(user, messageId);
    const input = d.service.isDraft(current) ? validate(draftInput, req.body, "body") : validate(messageInput, req.body, "body");
    res.json(await d.service.edit(user, messageId, input));
  });

  r.post("/:id/approve", requireJson(), async (req, res) => {
    const messageId = id(req.params);
    res.json(await d.service.approve(currentUser(req), messageId, validate(approveInput, req.body, "body")));
  });

  r.post("/:id/reject", requireJson(), async (req, res) => {
    const messageId = id(req.params);
    res.json(await d.service.reject(currentUser(req), messageId, validate(rejectInput, req.body, "body")));
  });

  r.post("/:id/withdraw", requireJson(true), async (req, res) => {
    const messageId = id(req.params);
    validate(z.strictObject({}), req.body, "body");
    res.json(await d.service.withdraw(currentUser(req), messageId));
  });

  r.post("/:id/recall", requireJson(), async (req, res) => {
    const messageId = id(req.params);
    res.json(await d.service.recall(currentUser(req), messageId, validate(recallInput, req.body, "body")));
  });

  r.post("/:id/correction/approve", requireJson(true), async (req, res) => {
    const messageId = id(req.params);
    res.json(await d.service.approveCorrection(currentUser(req), messageId, validate(approveCorrectionInput, req.body, "body")));
  });

  r.post("/:id/correction/reject", requireJson(), async (req, res) => {
    const messageId = id(req.params);
    res.json(await d.service.rejectCorrection(currentUser(req), messageId, validate(rejectCorrectionInput, req.body, "body")));
  });

  r.post("/:id/correction/standard", requireJson(true), async (req, res) => {
    const messageId = id(req.params);
    validate(z.strictObject({}), req.body, "body");
    res.json(await d.service.useStandardCorrection(currentUser(req), messageId));
  });

  r.post("/:id/pause", requireJson(), async (req, res) => {
    const messageId = id(req.params);
    res.json(await d.service.pause(currentUser(req), messageId, validate(pauseInput, req.body, "body")));
  });

  r.post("/:id/resume", requireJson(true), async (req, res) => {
    const messageId = id(req.params);
    validate(z.strictObject({}), req.body, "body");
    res.json(await d.service.resume(currentUser(req), messageId));
  });

  // A staged send (SPEC "Staged sends"): ops halt it (the ops pause) or continue it (the rest goes now).
  r.post("/:id/halt", requireJson(), async (req, res) => {
    const messageId = id(req.params);
    res.json(await d.service.halt(currentUser(req), messageId, validate(pauseInput, req.body, "body")));
  });

  r.post("/:id/continue", requireJson(true), async (req, res) => {
    const messageId = id(req.params);
    res.json(await d.service.continueWaves(currentUser(req), messageId, validate(continueInput, req.body ?? {}, "body")));
  });

  r.get("/:id/signals", async (req, res) => {
    res.json({ items: await d.service.signals(currentUser(req), id(req.params)) });
  });

  r.get("/:id/recipients", async (req, res) => {
    const m = await d.service.get(currentUser(req), id(req.params));
    const q = validate(recipientsQuery, req.query, "query");
    res.json(await d.store.recipients(m, { status: q.status, limit: q.limit, cursor: Number(q.cursor ?? 0) }));
  });

  r.get("/:id/events", async (req, res) => {
    const m = await d.service.get(currentUser(req), id(req.params));
    res.json({ items: await d.store.events(m.id) });
  });

  /**
   * A part exactly as it goes out: built by mail/compose.ts, the function the fan-out sends with.
   * `of=correction`: the correction (a custom text only as proposed, marked by its digest). The
   * digest of the whole MIME is in the `Airlock-Digest` header.
   */
  r.get("/:id/preview", async (req, res) => {
    const m = await d.service.get(currentUser(req), id(req.params));
    const q = validate(previewQuery, req.query, "query");
    const now = new Date();
    let built;
    try {
      built = await asSent(d.renderer, m, q.of, now);
    } catch (e) {
      // Stored before a rule it breaks (a house template since removed, a sender an older version
      // accepted): it cannot go out as it is, and says why.
      throw new DomainError("conflict", `message ${m.id} cannot be built as a mail: ${(e as Error).message}`, { state: m.state });
    }
    res.set("Airlock-Digest", built.digest);
    if (q.part === "text") return void res.type("text/plain; charset=utf-8").send(built.text);
    // The preview is untrusted author content rendered by our template: no scripts may run.
    res.set("Content-Security-Policy", "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; sandbox");
    res.type("html").send(built.html);
  });

  return r;
}
