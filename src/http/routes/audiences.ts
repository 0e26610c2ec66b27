/**
 * /api/audiences: create or replace by streamed JSON or CSV; list; show with its versions; delete.
 * Authors and admins create audiences; an audience is replaced or deleted by its owner (its
 * creator) or an admin, which the store checks atomically with the change.
 *
 * A user runs at most two uploads at a time (AudienceStore.startUpload, counted in Redis across API
 * processes): a further one is answered 429 before its body is read. An upload's rows are bounded
 * too, duplicates included (413, like too many distinct recipients).
 */
import { parse as parseContentType } from "content-type";
import express, { Router, type Request } from "express";
import { z } from "zod";
import type { AudienceStore, AudienceUpload } from "../../audiences/audience-store.js";
import { AUDIENCE_NAME } from "../../domain/audience-name.js";
import { parseCsv } from "../../audiences/csv.js";
import { readJsonAudience } from "../../audiences/json-upload.js";
import { DomainError } from "../../domain/errors.js";
import type { User } from "../../auth/users.js";
import { currentUser } from "../auth.js";
import { requireJson, validate } from "../errors.js";
import type { DirectoryAudiences } from "../../service/directory-audiences.js";

const name = z.string().regex(AUDIENCE_NAME, { error: "lower-case letters, digits and '-', at most 63" });

/** Both bodies are streamed (a million recipients are normal), so no body parser runs here: the stream must arrive as sent. */
function assertPlainBody(req: Request): void {
  const encoding = req.headers["content-encoding"];
  if (encoding !== undefined && encoding.toLowerCase() !== "identity") throw new DomainError("unsupported_media_type", "unsupported content encoding: send the body uncompressed");
  const charset = typeCharset(req.headers["content-type"]);
  if (charset !== undefined && !/^utf-?8$/i.test(charset)) throw new DomainError("unsupported_media_type", `unsupported charset ${charset.slice(0, 40)}: send UTF-8`);
}

function typeCharset(contentType: string | undefined): string | undefined {
  try {
    return contentType === undefined ? undefined : parseContentType(contentType).parameters.charset;
  } catch {
    return undefined; // req.is() already refused a type it cannot read
  }
}

/** Authors and admins change audiences (an author only the ones they own); answers whether the user may change any. */
function audienceEditor(req: Request): { user: User; anyOwner: boolean } {
  const user = currentUser(req);
  if (!user.roles.some((role) => role === "admin" || role === "author")) throw new DomainError("forbidden", "only authors and admins manage audiences");
  return { user, anyOwner: user.roles.includes("admin") };
}

export function audienceRoutes(d: { audiences: AudienceStore; directoryAudiences?: DirectoryAudiences }): Router {
  const r = Router();

  r.post("/", async (req, res) => {
    const { user, anyOwner } = audienceEditor(req);
    let upload: () => Promise<AudienceUpload>;
    if (req.is("text/csv")) {
      const q = validate(z.strictObject({ name }), req.query, "query");
      assertPlainBody(req);
      upload = () => d.audiences.replaceFromRecords(q.name, user.email, parseCsv(req), { anyOwner });
    } else {
      if (!req.is("application/json")) throw new DomainError("unsupported_media_type", "send application/json or text/csv");
      assertPlainBody(req);
      upload = async () => {
        const json = readJsonAudience(req);
        // A directory audience's body holds no recipient: the first record, or the end of the body,
        // tells the two apart without holding more than one record.
        const it = json.records[Symbol.asyncIterator]();
        const first = await it.next();
        const directory = first.done ? json.directory() : null;
        if (directory) return defineDirectoryAudience(json.name(), directory, user, anyOwner);
        async function* rest() {
          try {
            if (!first.done) yield first.value;
            for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
          } finally {
            // Stopped early (a refused row): close the reader as the store's loop would have, which stops reading the body.
            await it.return?.();
          }
        }
        return d.audiences.replaceFromRecords(json.name, user.email, rest(), { anyOwner });
      };
    }
    // Before a byte of the body is read; given back on every ending (success, refusal, the client
    // going away, an error), and before the answer, so a client that starts its next upload on
    // reading this one's answer finds its place free.
    const slot = await d.audiences.startUpload(user.email);
    let info: AudienceUpload;
    try {
      info = await upload();
    } finally {
      await slot.release();
    }
    res.status(201).json(info);
  });

  function defineDirectoryAudience(n: string, directory: { group: string; confirm: boolean }, user: User, anyOwner: boolean): Promise<AudienceUpload> {
    if (!d.directoryAudiences) throw new DomainError("directory_not_configured", `audience ${n}: no directory is configured (DIRECTORY_URL): nothing was changed`);
    return d.directoryAudiences.define(n, directory.group, user, { anyOwner, confirm: directory.confirm });
  }

  // Resolves a directory audience now (its owner or an admin); `confirm: true` (an admin) accepts a
  // resolution the change limit refuses as the new baseline. Small JSON body, or none.
  r.post("/:name/resolve", requireJson(true), express.json({ limit: "1kb" }), async (req, res) => {
    const { user, anyOwner } = audienceEditor(req);
    const n = validate(z.object({ name }), req.params, "params").name;
    const body = validate(z.strictObject({ confirm: z.boolean().optional() }), req.body ?? {}, "body");
    if (!d.directoryAudiences) throw new DomainError("directory_not_configured", `audience ${n}: no directory is configured (DIRECTORY_URL)`);
    const slot = await d.audiences.startUpload(user.email);
    try {
      res.status(200).json(await d.directoryAudiences.resolve(n, user, { anyOwner, confirm: body.confirm === true }));
    } finally {
      await slot.release();
    }
  });

  // A message froze its recipients at submit, so deleting a list changes no submitted message
  // (pending or scheduled included); an edit or submit naming it afterwards is refused.
  r.delete("/:name", async (req, res) => {
    const { user, anyOwner } = audienceEditor(req);
    const n = validate(z.object({ name }), req.params, "params").name;
    await d.audiences.delete(n, user.email, { anyOwner });
    res.status(204).end();
  });

  r.get("/", async (req, res) => {
    currentUser(req);
    res.json({ items: await d.audiences.list() });
  });

  r.get("/:name", async (req, res) => {
    currentUser(req);
    const n = validate(z.object({ name }), req.params, "params").name;
    const info = await d.audiences.detail(n);
    if (!info) throw new DomainError("not_found", `audience ${n} does not exist`);
    res.json(info);
  });

  return r;
}
