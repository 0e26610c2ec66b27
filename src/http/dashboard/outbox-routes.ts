/** The development outbox (only when mails are written to a folder): a list, and each raw mail as text. */
import { open, readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { Router, type NextFunction, type Request, type Response } from "express";
import { sessionOf } from "./guards.js";
import { canSeeQueues, type PageKit } from "./page-kit.js";

const OUTBOX_LIMIT = 100;

export function outboxRoutes(dir: string, k: PageKit): Router {
  const r = Router();
  // Raw mails hold approvers' working link tokens: only ops and admin may read them.
  const opsOnly = (req: Request, res: Response, next: NextFunction) =>
    canSeeQueues(sessionOf(req)!.user) ? next() : k.refusePage(req, res, 403, "Not allowed", "The outbox is for the ops and admin roles: its mails hold other people's links.");

  r.get("/outbox", k.signedIn, opsOnly, async (req, res) => {
    k.page(res, 200, "outbox", k.frame(req, "Outbox", "outbox"), { dir, limit: OUTBOX_LIMIT, items: await outboxItems(dir) });
  });

  r.get("/outbox/:name", k.signedIn, opsOnly, async (req, res) => {
    const name = String(req.params.name);
    if (!/^[0-9TZ-]{10,40}-[0-9]{6}$/.test(name)) return k.refusePage(req, res, 404, "No such mail", "That name is not one of the outbox's files.");
    const raw = await readFile(join(dir, `${name}.eml`)).catch(() => null);
    if (!raw) return k.refusePage(req, res, 404, "No such mail", "It may have been deleted from the outbox.");
    // Shown as text, never rendered: the raw mail is untrusted content.
    res.set({ "Cache-Control": "no-store", "Content-Security-Policy": "default-src 'none'; sandbox", "X-Content-Type-Options": "nosniff" }).type("text/plain; charset=utf-8").send(raw);
  });

  return r;
}

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
