/** /api/audiences: create or replace by JSON or streamed CSV; list; show. */
import { Router } from "express";
import { z } from "zod";
import { AUDIENCE_NAME, type AudienceStore } from "../../audiences/audience-store.js";
import { parseCsv } from "../../audiences/csv.js";
import { DomainError } from "../../domain/errors.js";
import { currentUser } from "../auth.js";
import { validate } from "../errors.js";

const name = z.string().regex(AUDIENCE_NAME, { error: "lower-case letters, digits and '-', at most 63" });
const jsonBody = z.strictObject({
  name,
  recipients: z
    .array(z.strictObject({ email: z.string().max(320), name: z.string().max(200).optional(), department: z.string().max(200).optional() }))
    .min(1),
});

export function audienceRoutes(d: { audiences: AudienceStore }): Router {
  const r = Router();

  r.post("/", async (req, res) => {
    const user = currentUser(req);
    if (!user.roles.some((role) => role === "admin" || role === "author")) throw new DomainError("forbidden", "only authors and admins manage audiences");
    if (req.is("text/csv")) {
      const q = validate(z.strictObject({ name }), req.query, "query");
      res.status(201).json(await d.audiences.replaceFromRecords(q.name, user.email, parseCsv(req)));
      return;
    }
    if (!req.is("application/json")) throw new DomainError("unsupported_media_type", "send application/json or text/csv");
    const body = validate(jsonBody, req.body, "body");
    res.status(201).json(await d.audiences.replaceFromRecords(body.name, user.email, body.recipients));
  });

  r.get("/", async (req, res) => {
    currentUser(req);
    res.json({ items: await d.audiences.list() });
  });

  r.get("/:name", async (req, res) => {
    currentUser(req);
    const n = validate(z.object({ name }), req.params, "params").name;
    const info = await d.audiences.get(n);
    if (!info) throw new DomainError("not_found", `audience ${n} does not exist`);
    res.json(info);
  });

  return r;
}
