/**
 * The author's pages: compose (/compose) and edit (/messages/:id/edit) a draft, a pending or a
 * rejected message — save, submit, "send me a test" — and discard a draft after a confirmation page;
 * plus the live preview the page script asks for. Plain POST forms read with the API's own schemas
 * (compose-form.ts); every decision is MessageService's, exactly as the API's are. The answer to a
 * form is the page again: after a change a redirect to it with a notice; after a refusal the form as
 * typed, each error next to its field, and nothing changed.
 */
import express, { Router, type Request, type Response } from "express";
import { z } from "zod";
import type { AudienceInfo } from "../../audiences/audience-store.js";
import type { User } from "../../auth/users.js";
import { normalizeAddress } from "../../domain/addresses.js";
import { DomainError } from "../../domain/errors.js";
import type { Message } from "../../domain/message.js";
import { sameIdentity } from "../../domain/policies.js";
import { chooseSender, formatMailbox } from "../../domain/sender.js";
import { composeOriginal, type OriginalFields } from "../../mail/compose.js";
import { audienceToHeader, newMessageId } from "../../mail/mime.js";
import { STATE_LABELS } from "../../notify/format.js";
import type { ComposeRules } from "../../service/message-service.js";
import {
  addressTokens,
  blankValues,
  COMPOSE_FIELDS,
  errorsFromDetails,
  holdMinLabel,
  parseCompose,
  sameValues,
  valuesFromForm,
  valuesFromMessage,
  type ComposeValues,
  type FieldErrors,
} from "./compose-form.js";
import { sessionOf } from "./guards.js";
import { form, one, type DashboardDeps, type PageKit } from "./page-kit.js";
import { formatNumber } from "./view-model.js";

/** A Markdown body may be 200,000 characters (up to ~1.8 MB percent-encoded); lists are one field each. */
const composeForm = express.urlencoded({ extended: false, limit: "2mb", parameterLimit: 200 });
/** Edited as a draft (saved as it is) or as a new submitted revision (pending, rejected). */
const DRAFT = "draft";
const RESUBMITTABLE: readonly string[] = ["pending_approval", "rejected"];
/** The HTML part in the preview frame: author content in our template, no script may run (as /api/…/preview). */
const PREVIEW_CSP = "default-src 'none'; img-src https: data:; style-src 'unsafe-inline'; sandbox";

const doneQuery = z.enum(["saved", "unchanged", "submitted", "tested"]).optional().catch(undefined);
const idQuery = z.string().regex(/^[1-9][0-9]{0,15}$/).optional().catch(undefined);

/** What the preview panel shows: both parts exactly as composeOriginal builds them, and the digest. */
interface Preview {
  /** Whose build it is: the saved revision's, or what was typed (not saved). */
  label: string;
  subject: string;
  from: string;
  text: string;
  digest: string;
  /** The frame's address (the saved revision through the API); null when the page script fills the frame. */
  htmlUrl: string | null;
  /** Why it could not be built, instead of the parts. */
  error: string | null;
}

interface PageState {
  m: Message | null;
  values: ComposeValues;
  errors?: FieldErrors;
  general?: string[];
  notice?: { tone: "info" | "warning"; text: string } | null;
  /** Someone (or another tab) saved meanwhile: the revision stored now. */
  stale?: number | null;
  /** The panel's build; absent: the saved revision's. */
  preview?: Preview | null;
}

type Refusal = Pick<PageState, "errors" | "general" | "notice" | "stale"> & { status: number };

export function composeRoutes(d: DashboardDeps, k: PageKit): Router {
  const r = Router();
  const userOf = (req: Request): User => sessionOf(req)!.user;

  // ---- a new message
  r.get("/compose", k.signedIn, async (req, res) => {
    if (!mayCompose(req, res)) return;
    await show(req, res, 200, { m: null, values: blankValues() });
  });

  r.post("/compose", composeForm, k.signedIn, k.csrf, async (req, res) => {
    if (!mayCompose(req, res)) return;
    const user = userOf(req);
    const { values, action } = read(req);
    const holdMinSeconds = d.service.composeRules(user).holdMinSeconds;
    if (action === "submit") {
      const p = parseCompose(values, { complete: true, holdMinSeconds });
      if (!p.ok) return show(req, res, 400, { m: null, values, errors: p.errors, notice: NOT_SAVED });
      try {
        const m = await d.service.create(user, p.input);
        return res.redirect(303, `/messages/${m.id}/edit?done=submitted`);
      } catch (e) {
        return show(req, res, ...refusedAs(e, { m: null, values }));
      }
    }
    if (action !== "save" && action !== "test") return unreadable(req, res);
    const p = parseCompose(values, { complete: false, holdMinSeconds });
    if (!p.ok) return show(req, res, 400, { m: null, values, errors: p.errors, notice: NOT_SAVED });
    let m: Message;
    try {
      m = await d.service.create(user, p.input);
    } catch (e) {
      return show(req, res, ...refusedAs(e, { m: null, values }));
    }
    if (action === "save") return res.redirect(303, `/messages/${m.id}/edit?done=saved`);
    await testThenAnswer(req, res, m, values, `Saved as draft revision ${m.revision}, but the test was not sent`);
  });

  // ---- an existing one: a draft, or a pending or rejected message (a new revision)
  r.get("/messages/:id/edit", k.signedIn, async (req, res) => {
    const m = await ownEditable(req);
    const user = userOf(req);
    const done = doneQuery.parse(one(req.query.done));
    await show(req, res, 200, { m, values: valuesFromMessage(m, d.service.composeRules(user).holdMinSeconds), notice: done ? { tone: "info", text: doneText(done, m, user) } : null });
  });

  r.post("/messages/:id/edit", composeForm, k.signedIn, k.csrf, async (req, res) => {
    const m = await ownEditable(req);
    const user = userOf(req);
    const { values, action, revision } = read(req);
    const holdMinSeconds = d.service.composeRules(user).holdMinSeconds;
    const unchanged = sameValues(values, valuesFromMessage(m, holdMinSeconds));
    if (revision !== m.revision) return show(req, res, 409, { m, values, stale: m.revision, notice: staleNotice(m.revision) });
    const isDraft = m.state === DRAFT;

    if (action === "test") {
      if (isDraft) {
        const saved = await saveDraft(req, res, m, values, unchanged);
        if (saved) await testThenAnswer(req, res, saved, values, `Saved as draft revision ${saved.revision}, but the test was not sent`);
        return;
      }
      // A pending or rejected message: the test is of the saved revision; saving would submit anew.
      if (unchanged) return testThenAnswer(req, res, m, values, "The test was not sent");
      try {
        const sent = await d.service.testSend(user, m.id);
        return show(req, res, 200, {
          m,
          values,
          notice: { tone: "warning", text: `Test of revision ${sent.revision} as saved sent to ${sent.to} only. The changes in the form are not in it and not saved: “Submit” makes them revision ${m.revision + 1}.` },
        });
      } catch (e) {
        return show(req, res, ...refusedAs(e, { m, values }, "The test was not sent"));
      }
    }

    if (action === "save") {
      if (!isDraft) return unreadable(req, res);
      const saved = await saveDraft(req, res, m, values, unchanged);
      if (saved) res.redirect(303, `/messages/${m.id}/edit?done=${unchanged ? "unchanged" : "saved"}`);
      return;
    }

    if (action !== "submit") return unreadable(req, res);
    // Checked whole before anything is saved: a refused submit changes nothing.
    const p = parseCompose(values, { complete: true, holdMinSeconds });
    if (!p.ok) return show(req, res, 400, { m, values, errors: p.errors, notice: NOT_SAVED });
    if (!isDraft) {
      if (unchanged && m.state === "pending_approval") return show(req, res, 200, { m, values, notice: { tone: "info", text: `Nothing changed: revision ${m.revision} is already waiting for approval.` } });
      try {
        await d.service.edit(user, m.id, p.input);
      } catch (e) {
        return show(req, res, ...refusedAs(e, { m, values }));
      }
      return res.redirect(303, `/messages/${m.id}/edit?done=submitted`);
    }
    const saved = await saveDraft(req, res, m, values, unchanged);
    if (!saved) return;
    try {
      // At the revision just saved: a save from elsewhere in between makes it a 409, not a surprise.
      await d.service.submitDraft(user, m.id, { revision: saved.revision });
    } catch (e) {
      const prefix = saved.revision !== m.revision ? `Saved as draft revision ${saved.revision}, but not submitted` : "Not submitted";
      return show(req, res, ...refusedAs(e, { m: saved, values }, prefix));
    }
    res.redirect(303, `/messages/${m.id}/edit?done=submitted`);
  });

  // ---- discard a draft: a confirmation page, then the POST
  r.get("/messages/:id/discard", k.signedIn, async (req, res) => {
    const m = await ownDraft(req);
    k.page(res, 200, "discard", k.frame(req, `Discard ${m.subject || "draft"}`, "none"), { m: { id: m.id, subject: m.subject || "(no subject yet)", revision: m.revision } });
  });

  r.post("/messages/:id/discard", form, k.signedIn, k.csrf, async (req, res) => {
    const m = await ownDraft(req);
    await d.service.discardDraft(userOf(req), m.id);
    res.redirect(303, "/mine?done=discarded");
  });

  // ---- live preview for the page script: the form as typed, built as it would go out, never saved
  r.post("/compose/preview", composeForm, k.signedIn, k.csrf, async (req, res) => {
    const user = userOf(req);
    if (!d.service.mayCompose(user)) return k.refusePage(req, res, 403, "Not allowed", "Writing messages is for authors.");
    const id = idQuery.parse(one(req.query.id));
    const m = id ? await own(req, id) : null;
    const { values } = read(req);
    const built = await unsavedPreview(user, values, m);
    if (one(req.query.part) === "html") {
      const html = "html" in built ? built.html : `<!DOCTYPE html><meta charset="utf-8"><title>No preview</title><p>No preview: ${escapeHtml(built.preview.error ?? "")}</p>`;
      return void res.status(200).set({ "Cache-Control": "no-store", "Content-Security-Policy": PREVIEW_CSP }).type("html").send(html);
    }
    await show(req, res, 200, { m, values, preview: built.preview });
  });

  return r;

  function mayCompose(req: Request, res: Response): boolean {
    if (d.service.mayCompose(userOf(req))) return true;
    k.refusePage(req, res, 403, "Not allowed", "Writing messages is for the author role. Ask an admin if you need it.");
    return false;
  }

  function read(req: Request): { values: ComposeValues; action: string; revision: number } {
    const body = (req.body ?? {}) as Record<string, unknown>;
    return { values: valuesFromForm(body), action: one(body.action) ?? "", revision: Number(one(body.revision)) };
  }

  function unreadable(req: Request, res: Response): void {
    k.refusePage(req, res, 400, "The form could not be read", "Reload the page and try again. Nothing was changed.");
  }

  /** The message the URL names, if it is this user's own: anyone else's is not there (404), as the API's drafts are. */
  async function own(req: Request, id?: string): Promise<Message> {
    const m = id ? await d.service.get(userOf(req), id) : await k.messageOr404(req);
    if (!sameIdentity(m.author, userOf(req).email)) throw new DomainError("not_found", "there is no message of yours at this address");
    return m;
  }

  async function ownEditable(req: Request): Promise<Message> {
    const m = await own(req);
    if (m.state !== DRAFT && !RESUBMITTABLE.includes(m.state)) {
      throw new DomainError("conflict", `This message is ${STATE_LABELS[m.state] ?? m.state}: it can no longer be edited. Its page shows what happens to it.`, { state: m.state });
    }
    return m;
  }

  async function ownDraft(req: Request): Promise<Message> {
    const m = await own(req);
    if (m.state !== DRAFT) throw new DomainError("conflict", `This message is ${STATE_LABELS[m.state] ?? m.state}, not a draft: only a draft is discarded.`, { state: m.state });
    return m;
  }

  /** Saves the form over the draft (unless nothing changed); on a refusal answers the page and returns null. */
  async function saveDraft(req: Request, res: Response, m: Message, values: ComposeValues, unchanged: boolean): Promise<Message | null> {
    if (unchanged) return m;
    const p = parseCompose(values, { complete: false, holdMinSeconds: d.service.composeRules(userOf(req)).holdMinSeconds });
    if (!p.ok) {
      await show(req, res, 400, { m, values, errors: p.errors, notice: NOT_SAVED });
      return null;
    }
    try {
      return await d.service.edit(userOf(req), m.id, p.input);
    } catch (e) {
      await show(req, res, ...refusedAs(e, { m, values }));
      return null;
    }
  }

  async function testThenAnswer(req: Request, res: Response, m: Message, values: ComposeValues, failure: string): Promise<void> {
    try {
      await d.service.testSend(userOf(req), m.id);
    } catch (e) {
      return show(req, res, ...refusedAs(e, { m, values }, failure));
    }
    res.redirect(303, `/messages/${m.id}/edit?done=tested`);
  }

  /** A refusal of the service as the page again: field errors next to their fields, anything else in the notice. */
  function refusedAs(e: unknown, s: PageState, prefix = "Nothing was saved"): [number, PageState] {
    if (!(e instanceof DomainError)) throw e;
    const tokens = addressTokens(s.values.addresses);
    switch (e.code) {
      case "invalid_input": {
        const { errors, general } = errorsFromDetails(e.details, tokens);
        const text = Object.keys(errors).length ? `${prefix}: correct the fields marked below.` : `${prefix}: ${general[0] ?? e.message}.`;
        return [400, { ...s, errors, general: Object.keys(errors).length ? general : general.slice(1), notice: { tone: "warning", text } }];
      }
      case "stale_revision": {
        const revision = Number((e.details as { revision?: unknown } | undefined)?.revision ?? s.m?.revision ?? 0);
        return [409, { ...s, stale: revision, notice: staleNotice(revision) }];
      }
      case "conflict":
      case "rate_limited":
      case "too_large":
        return [e.code === "conflict" ? 409 : e.code === "too_large" ? 413 : 429, { ...s, notice: { tone: "warning", text: `${prefix}: ${e.message}.` } }];
      default:
        throw e;
    }
  }

  /** The page, with the audience picker's counts and the preview worked out from what the form holds. */
  async function show(req: Request, res: Response, status: number, s: PageState): Promise<void> {
    const user = userOf(req);
    const rules = d.service.composeRules(user);
    const [catalogue, preview] = await Promise.all([d.audiences.list(), s.preview !== undefined ? s.preview : s.m ? savedPreview(s.m) : null]);
    const summary = await audienceSummary(s.values, catalogue, rules);
    const m = s.m;
    const isDraft = m === null || m.state === DRAFT;
    const errors = s.errors ?? {};
    const chosenFrom = s.values.from || rules.senders[0]?.address || "";
    const senders = rules.senders.map((mb) => ({ address: mb.address, label: formatMailbox(mb), selected: mb.address === chosenFrom }));
    if (chosenFrom && !senders.some((o) => o.selected)) senders.push({ address: chosenFrom, label: `${chosenFrom} (not one of your sender mailboxes)`, selected: true });
    const known = new Set(catalogue.map((a) => a.name));
    const lists = [
      ...catalogue.map((a) => ({ name: a.name, size: a.size, by: a.by, checked: s.values.lists.includes(a.name), missing: false })),
      ...s.values.lists.filter((n) => !known.has(n)).map((name) => ({ name, size: 0, by: "", checked: true, missing: true })),
    ];
    // The house templates of templates/messages/, as the renderer (and the service's check) knows them.
    const templates = d.renderer.templates();
    k.page(res, status, "compose", k.frame(req, m ? `Edit ${m.subject || "draft"}` : "Compose", m ? "none" : "compose"), {
      m: m ? { id: m.id, revision: m.revision, state: m.state, stateLabel: STATE_LABELS[m.state] ?? m.state, textBody: !m.markdown && m.text !== "" } : null,
      action: m ? `/messages/${m.id}/edit` : "/compose",
      previewAction: m ? `/compose/preview?id=${m.id}` : "/compose/preview",
      revision: s.stale ?? m?.revision ?? "",
      values: s.values,
      errors,
      invalid: Object.fromEntries(COMPOSE_FIELDS.map((f) => [f, errors[f] !== undefined])),
      errorCount: Object.keys(errors).length,
      general: s.general ?? [],
      notice: s.notice ?? null,
      stale: s.stale ?? null,
      senders,
      lists,
      summary,
      templates: templates.length ? [{ name: "", label: "Standard layout", selected: !s.values.template }, ...templates.map((t) => ({ name: t, label: templateLabel(t), selected: t === s.values.template }))] : [],
      hold: { min: Math.floor((rules.holdMinSeconds / 60) * 10_000) / 10_000, minLabel: holdMinLabel(rules.holdMinSeconds) },
      preview,
      isDraft,
      resubmit: !isDraft,
      submitLabel: isDraft ? "Submit for approval" : `Submit as revision ${m!.revision + 1}`,
      submitRevision: (m?.revision ?? 0) + 1,
      me: user.email,
    });
  }

  async function audienceSummary(values: ComposeValues, catalogue: AudienceInfo[], rules: ComposeRules) {
    const byName = new Map(catalogue.map((a) => [a.name, a]));
    const chosen = values.lists.map((n) => byName.get(n)).filter((a): a is AudienceInfo => a !== undefined);
    const addresses = [...new Set(addressTokens(values.addresses).flatMap((t) => { const a = normalizeAddress(t); return a.ok ? [a.address] : []; }))];
    const total = chosen.reduce((n, a) => n + a.size, 0) + addresses.length;
    // Two sources may share recipients: the set frozen at submission counts each address once.
    const upTo = chosen.length + (addresses.length > 0 ? 1 : 0) > 1;
    const least = Math.max(0, addresses.length, ...chosen.map((a) => a.size));
    const [fewest, most] = [rules.approvalsFor(least), rules.approvalsFor(total)];
    const counts = new Map<string, number>();
    for (const list of await Promise.all(chosen.map((a) => d.audiences.domains(a.name)))) for (const x of list) counts.set(x.domain, (counts.get(x.domain) ?? 0) + x.count);
    for (const a of addresses) { const domain = a.slice(a.lastIndexOf("@") + 1); counts.set(domain, (counts.get(domain) ?? 0) + 1); }
    const domains = [...counts].map(([domain, count]) => ({ domain, count })).sort((a, b) => b.count - a.count || (a.domain < b.domain ? -1 : 1));
    const plural = (n: number, one: string) => `${formatNumber(n)} ${n === 1 ? one : `${one}s`}`;
    return {
      total,
      countLabel: total === 0 ? "No recipients yet" : `${upTo ? "Up to " : ""}${plural(total, "recipient")}`,
      upTo,
      approvalsLabel: fewest === most ? plural(most, "approval") : `${fewest}–${most} approvals, depending on how much the lists overlap`,
      domains,
    };
  }

  async function savedPreview(m: Message): Promise<Preview | null> {
    if (!m.markdown && !m.text) return null;
    try {
      const built = await composeOriginal(d.renderer, m, new Date(d.clock.now()));
      return { label: `Revision ${m.revision} as saved`, subject: built.parts.subject, from: m.from, text: built.parts.text, digest: built.digest, htmlUrl: `/api/messages/${m.id}/preview?part=html`, error: null };
    } catch (e) {
      return { label: `Revision ${m.revision} as saved`, subject: m.subject, from: m.from, text: "", digest: "", htmlUrl: null, error: (e as Error).message };
    }
  }

  /** The form as typed, built by the function the fan-out sends with: the fields derived as the service derives them at save. */
  async function unsavedPreview(user: User, values: ComposeValues, m: Message | null): Promise<{ preview: Preview; html: string } | { preview: Preview }> {
    const rules = d.service.composeRules(user);
    const label = "What the form holds now (not saved)";
    const failed = (error: string) => ({ preview: { label, subject: values.subject, from: "", text: "", digest: "", htmlUrl: null, error } });
    const p = parseCompose(values, { complete: false, holdMinSeconds: rules.holdMinSeconds });
    if (!p.ok) return failed(`first correct: ${Object.values(p.errors)[0] ?? "the form"}`);
    if (!p.input.markdown) return failed("write the message first");
    const sender = chooseSender(p.input.from, rules.senders);
    if (!sender.ok) return failed(`sender: ${sender.reason}`);
    const lists = [...new Set(p.input.audience?.lists ?? [])];
    const fields: OriginalFields = {
      subject: p.input.subject ?? "",
      text: "",
      html: null,
      markdown: p.input.markdown,
      template: p.input.template ?? "",
      from: formatMailbox(sender.mailbox),
      toHeader: audienceToHeader(lists, new Set(p.input.audience?.addresses ?? []).size, rules.mailDomain),
      // A saved message keeps its Message-ID, so the digest is the one saving this text would record.
      messageId: m?.messageId ?? newMessageId(rules.mailDomain, "new"),
    };
    try {
      const built = await composeOriginal(d.renderer, fields, new Date(d.clock.now()));
      return { preview: { label, subject: built.parts.subject, from: fields.from, text: built.parts.text, digest: m ? built.digest : "", htmlUrl: null, error: null }, html: built.parts.html };
    } catch (e) {
      return failed((e as Error).message);
    }
  }
}

const NOT_SAVED = { tone: "warning", text: "Nothing was saved: correct the fields marked below." } as const;

function staleNotice(revision: number): PageState["notice"] {
  return {
    tone: "warning",
    text: `Not saved: this message changed since you opened it (someone, or another tab, saved revision ${revision}). What you typed is kept below. Compare it with revision ${revision} on the message page; saving again replaces revision ${revision} with what the form holds.`,
  };
}

function doneText(done: NonNullable<z.infer<typeof doneQuery>>, m: Message, user: User): string {
  switch (done) {
    case "saved":
      return `Draft saved as revision ${m.revision}.`;
    case "unchanged":
      return `Nothing to save: revision ${m.revision} already holds this.`;
    case "submitted":
      return m.state === "pending_approval"
        ? `Submitted for approval as revision ${m.revision}: it needs ${m.requiredApprovals} approval${m.requiredApprovals === 1 ? "" : "s"}, and the approvers have been asked.`
        : `Submitted as revision ${m.revision}; it is ${STATE_LABELS[m.state] ?? m.state} now.`;
    case "tested":
      return `Test of revision ${m.revision} sent to ${user.email} only, its subject marked [TEST].`;
  }
}

const templateLabel = (name: string) => name.charAt(0).toUpperCase() + name.slice(1).replace(/-/g, " ");

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
