/** What an author submits, validated: the one schema for create and edit. No HTTP here. */
import { z } from "zod";
import { normalizeAddress } from "./addresses.js";
import { AUDIENCE_NAME } from "./audience-name.js";
import { bodyTextProblem, headerTextProblem } from "./text-rules.js";

/** Explicit addresses in one message; larger audiences are uploaded as an audience. */
export const MAX_EXPLICIT_ADDRESSES = 10_000;

const address = z.string().transform((raw, ctx) => {
  const r = normalizeAddress(raw);
  if (!r.ok) {
    ctx.addIssue({ code: "custom", message: `invalid address: ${r.reason}` });
    return z.NEVER;
  }
  return r.address;
});

const singleLine = (max: number) =>
  z
    .string()
    .trim()
    .min(1)
    .max(max)
    .superRefine((s, ctx) => {
      const problem = headerTextProblem(s);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    });

/** A body: any text a mail can carry intact (see domain/text-rules.ts). */
const body = (min: number, max: number) =>
  z
    .string()
    .min(min)
    .max(max)
    .superRefine((s, ctx) => {
      const problem = bodyTextProblem(s);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    });

const audienceName = z.string().regex(AUDIENCE_NAME, { error: "not an audience name" });

const audienceShape = z.strictObject({
  lists: z.array(audienceName).max(50).optional(),
  addresses: z.array(address).max(MAX_EXPLICIT_ADDRESSES).optional(),
});

/** A house template of templates/messages/ (its file name without `.hbs`). */
export const templateName = z.string().regex(/^[a-z0-9][a-z0-9-]{0,40}$/, { error: "not a template name" });

/**
 * The fields of a message. The body has one source: `markdown` (rendered into the house
 * `template` as the HTML part and into the plain-text part), or, for API clients, `text` (and
 * optionally `html`), both shown to approvers everywhere.
 */
const fields = {
  subject: singleLine(250),
  markdown: body(1, 200_000).optional(),
  template: templateName.optional(),
  text: body(1, 200_000).optional(),
  html: body(0, 500_000).optional(),
  from: singleLine(320).optional(),
  audience: audienceShape,
  holdMinutes: z.number().positive().max(30 * 24 * 60).optional(),
  sendAt: z.iso.datetime({ offset: true }).optional(),
};

type BodySource = { markdown?: string; text?: string; html?: string; template?: string };
/** One source for the body: Markdown, or text (with optional HTML); never both, never neither (`required`). */
const oneBodySource = (required: boolean) => (v: BodySource, ctx: z.RefinementCtx) => {
  if (v.markdown !== undefined && (v.text !== undefined || v.html !== undefined)) {
    ctx.addIssue({ code: "custom", path: ["markdown"], message: "give the body as markdown or as text (and html), not both" });
  }
  if (v.template !== undefined && v.markdown === undefined) ctx.addIssue({ code: "custom", path: ["template"], message: "a template applies to a markdown body" });
  if (v.html !== undefined && v.text === undefined) ctx.addIssue({ code: "custom", path: ["text"], message: "an html body needs its plain-text part" });
  if (required && v.markdown === undefined && v.text === undefined) ctx.addIssue({ code: "custom", path: ["text"], message: "required: markdown, or text" });
};

/** Create (and submit, unless `draft: true`) or edit a message: every field a submit needs. */
export const messageInput = z
  .strictObject({
    ...fields,
    audience: audienceShape.refine((a) => (a.lists?.length ?? 0) + (a.addresses?.length ?? 0) > 0, { error: "name at least one list or address" }),
    /** Save as a draft instead of submitting. */
    draft: z.boolean().optional(),
    /**
     * Staged send (SPEC "Staged sends"): true stages it whatever its size; false sends it all at
     * once (admins only); absent: staged from WAVES_THRESHOLD recipients.
     */
    waves: z.boolean().optional(),
    /** An audience whose members (those among the recipients) go first, with the author and the approvers. */
    seedAudience: audienceName.optional(),
  })
  .superRefine(oneBodySource(true))
  .superRefine((v, ctx) => {
    if (v.draft && (v.waves !== undefined || v.seedAudience !== undefined)) {
      ctx.addIssue({ code: "custom", path: ["waves"], message: "waves and seedAudience are chosen when the message is submitted (POST /api/messages/:id/submit), not on a draft" });
    }
    if (v.waves === false && v.seedAudience !== undefined) ctx.addIssue({ code: "custom", path: ["seedAudience"], message: "a seed audience is for a staged send (waves: false sends all at once)" });
  });

/** A draft may be incomplete: every field optional, each one valid when given. */
export const draftInput = z
  .strictObject({ ...fields, subject: fields.subject.optional(), audience: audienceShape.optional(), draft: z.boolean().optional() })
  .superRefine(oneBodySource(false));
export type DraftInput = z.infer<typeof draftInput>;

/** Submitting a draft names the revision the author saw (409 with the current one when it changed). */
export const submitDraftInput = z.strictObject({
  revision: z.number().int().positive().optional(),
  /** A staged send's choices (see messageInput): made when the draft is submitted. */
  waves: z.boolean().optional(),
  seedAudience: audienceName.optional(),
});

export type MessageInput = z.infer<typeof messageInput>;

/** An approval names what it approves: the revision, and (when given) the digest of its exact MIME. */
export const approveInput = z.strictObject({
  comment: z.string().max(2000).optional(),
  revision: z.number({ error: "required: the revision you reviewed" }).int().positive(),
  digest: z.string().regex(/^[0-9a-f]{64}$/, { error: "not a SHA-256 digest (64 hex digits)" }).optional(),
});
export const rejectInput = z.strictObject({ reason: z.string().trim().min(1).max(2000), revision: z.number().int().positive().optional() });
/** An approval of a custom correction text names, when given, the digest of the correction reviewed. */
export const approveCorrectionInput = z.strictObject({
  comment: z.string().max(2000).optional(),
  digest: z.string().regex(/^[0-9a-f]{64}$/, { error: "not a SHA-256 digest (64 hex digits)" }).optional(),
});
/** Rejecting a correction text sends the standard correction instead; the reason is audited. */
export const rejectCorrectionInput = z.strictObject({ reason: z.string().trim().min(1).max(2000) });
/**
 * Continue a staged send: `from`, the phase the person saw (seed, canary, wait, rest); a continue
 * from a phase the send has left is refused, so that a retry never moves it on twice.
 */
export const continueInput = z.strictObject({ from: z.enum(["seed", "canary", "wait", "rest"]).optional() });
/** Why ops hold a fan-out: shown on the dashboard and kept in the audit. */
export const pauseInput = z.strictObject({ reason: z.string().trim().min(1).max(2000) });
export const recallInput = z.strictObject({ reason: z.string().trim().min(1).max(2000), correctionText: body(0, 50_000).optional() });
