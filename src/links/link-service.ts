/**
 * What a link in an email may do. `inspect` (for GET/HEAD) only reads: token, message, holder,
 * state. `asSent` builds what the action is about exactly as it goes out (mail/compose.ts), for
 * the page to show with its digest. `act` (for the POST from the confirmation page) re-checks
 * everything, checks that an approval names the digest of what would go out now (the page's hidden
 * field: an edit or any change in between refuses it), claims the token once, then performs the
 * action through MessageService as the token's holder — the same rules, compare-and-set scripts and
 * audit entries as the API. No HTTP here: answers are codes.
 */
import { z } from "zod";
import { mayDecide, type User, type UserDirectory } from "../auth/users.js";
import type { Clock } from "../domain/clock.js";
import { DomainError, isDigestConflict } from "../domain/errors.js";
import { canApply, TERMINAL_STATES } from "../domain/lifecycle.js";
import type { Message } from "../domain/message.js";
import { recallInput, rejectCorrectionInput, rejectInput } from "../domain/message-input.js";
import { sameIdentity } from "../domain/policies.js";
import type { Renderer } from "../mail/render.js";
import { asSent } from "../notify/as-sent.js";
import type { LinkAction, SentMail } from "../notify/notification-data.js";
import type { MessageService } from "../service/message-service.js";
import type { MessageStore } from "../store/message-store.js";
import { LINK_ACTIONS, type LinkTokens, type StoredGrant } from "./link-tokens.js";

/**
 * Why a link does nothing:
 * invalid (malformed, unknown or tampered: indistinguishable on purpose), expired, used,
 * stale_revision (the message was edited since), closed (the state no longer allows the action),
 * already (you already did it), wrong_action, wrong_user, forbidden (roles, own message, own
 * correction text), bad_form (a field sent twice or not as text, or an approval without the page's
 * digest: not the page's form), changed (what would go out is not what the page showed).
 */
export type RefusalCode = "invalid" | "expired" | "used" | "stale_revision" | "closed" | "already" | "wrong_action" | "wrong_user" | "forbidden" | "bad_form" | "changed";

export interface Refusal {
  ok: false;
  code: RefusalCode;
  grant: StoredGrant | null;
  message: Message | null;
}

export interface Inspected {
  ok: true;
  grant: StoredGrant;
  holder: User;
  message: Message;
}

export type FormErrors = Partial<Record<"comment" | "reason" | "correctionText", string>>;

export type ActResult =
  | Refusal
  | { ok: false; code: "invalid_input"; inspected: Inspected; errors: FormErrors }
  | { ok: true; action: LinkAction; message: Message; delivered: number };

/** The confirmation form, as posted (urlencoded). Every field a string; unknown fields are ignored. */
const linkForm = z.object({
  action: z.enum(LINK_ACTIONS as [LinkAction, ...LinkAction[]]),
  comment: z.string().optional(),
  reason: z.string().optional(),
  correctionText: z.string().optional(),
  /** The digest the page showed (approve, approveCorrection). */
  digest: z.string().optional(),
});
export type LinkForm = z.infer<typeof linkForm>;

const DIGEST = /^[0-9a-f]{64}$/;
/** Actions about the correction text proposed at a recall, rather than the message itself. */
const CORRECTION_ACTIONS: readonly LinkAction[] = ["approveCorrection", "rejectCorrection"];
/** Actions that approve something: the POST must name the digest of what the page showed. */
const APPROVALS: readonly LinkAction[] = ["approve", "approveCorrection"];

export class LinkService {
  constructor(
    private readonly d: { tokens: LinkTokens; store: MessageStore; service: MessageService; users: UserDirectory; renderer: Renderer; clock: Clock },
  ) {}

  /**
   * What the action is about, exactly as it goes out: the message, or for the correction actions
   * the correction with the text proposed at the recall. Throws when it cannot be built.
   */
  asSent(m: Message, action: LinkAction): Promise<SentMail> {
    const date = new Date(this.d.clock.now());
    return asSent(this.d.renderer, m, CORRECTION_ACTIONS.includes(action) ? "correction" : "original", date);
  }

  async inspect(token: string): Promise<Inspected | Refusal> {
    const c = await this.d.tokens.check(token);
    if (!c.ok) {
      const code: RefusalCode = c.reason === "expired" || c.reason === "used" ? c.reason : "invalid";
      const grant = "grant" in c ? c.grant : null;
      return { ok: false, code, grant, message: grant ? await this.d.store.get(grant.message) : null };
    }
    const { grant } = c;
    const message = await this.d.store.get(grant.message);
    const refuse = (code: RefusalCode): Refusal => ({ ok: false, code, grant, message });
    if (!message) return refuse("invalid");
    if (message.revision !== grant.revision) return refuse("stale_revision");
    const holder = this.d.users.byAddress(grant.user);
    if (!holder) return refuse("forbidden"); // no longer in USERS_FILE
    if (grant.action === "recall") {
      // A recall link lives until the message reaches a terminal state.
      if (TERMINAL_STATES.includes(message.state)) return refuse("expired");
      if (!this.d.service.mayRecall(holder, message)) return refuse("forbidden");
      if (!canApply("recall", message.state)) return refuse("closed");
    } else if (CORRECTION_ACTIONS.includes(grant.action)) {
      // Four eyes on the correction: never the person who recalled and wrote it (a forwarded link included).
      if (!mayDecide(holder) || (message.recall && sameIdentity(message.recall.by, holder.email))) return refuse("forbidden");
      const c = message.correction;
      if (!c || c.status !== "pending" || !canApply(grant.action, message.state)) return refuse("closed");
      if (grant.action === "approveCorrection" && c.approvals.some((a) => sameIdentity(a.by, holder.email))) return refuse("already");
    } else {
      if (!mayDecide(holder) || sameIdentity(message.author, holder.email)) return refuse("forbidden");
      if (grant.action === "approve" && message.approvals.some((a) => sameIdentity(a.by, holder.email))) return refuse("already");
      if (!canApply(grant.action, message.state)) return refuse("closed");
    }
    return { ok: true, grant, holder, message };
  }

  /**
   * `signedIn`: the user a browser is signed in as, if any; a link sent to someone else is refused
   * rather than acted on in the wrong name.
   */
  async act(token: string, rawForm: unknown, signedIn: User | null): Promise<ActResult> {
    const i = await this.inspect(token);
    if (!i.ok) return i;
    const form = linkForm.safeParse(rawForm);
    if (!form.success && Object.values(rawForm as object).some((v) => typeof v !== "string")) return { ok: false, code: "bad_form", grant: i.grant, message: i.message };
    if (!form.success || form.data.action !== i.grant.action) return { ok: false, code: "wrong_action", grant: i.grant, message: i.message };
    if (signedIn && signedIn.email !== i.holder.email) return { ok: false, code: "wrong_user", grant: i.grant, message: i.message };
    const errors = validateFields(i.grant.action, form.data);
    if (errors) return { ok: false, code: "invalid_input", inspected: i, errors };
    const approves = APPROVALS.includes(i.grant.action);
    if (approves) {
      // An approval is of what the page showed: its digest, and still what would go out now.
      const shown = form.data.digest;
      if (shown === undefined || !DIGEST.test(shown)) return { ok: false, code: "bad_form", grant: i.grant, message: i.message };
      let now: string | null = null;
      try {
        now = (await this.asSent(i.message, i.grant.action)).digest;
      } catch {
        // cannot be built any more: not what the page showed either
      }
      if (now !== shown) return { ok: false, code: "changed", grant: i.grant, message: i.message };
    }

    if (!(await this.d.tokens.claim(i.grant))) return { ok: false, code: "used", grant: i.grant, message: i.message };
    const { holder, grant } = i;
    try {
      let delivered = 0;
      let message: Message;
      const f = form.data;
      if (grant.action === "approve") {
        message = await this.d.service.approve(holder, grant.message, { revision: grant.revision, digest: f.digest!, comment: f.comment?.trim() ?? "" });
      } else if (grant.action === "reject") {
        message = await this.d.service.reject(holder, grant.message, { revision: grant.revision, reason: f.reason!.trim() });
      } else if (grant.action === "approveCorrection") {
        message = await this.d.service.approveCorrection(holder, grant.message, { digest: f.digest!, comment: f.comment?.trim() ?? "" });
      } else if (grant.action === "rejectCorrection") {
        message = await this.d.service.rejectCorrection(holder, grant.message, { reason: f.reason!.trim() });
      } else {
        const r = await this.d.service.recall(holder, grant.message, { reason: f.reason!.trim(), correctionText: f.correctionText?.trim() || undefined });
        message = r;
        delivered = r.delivered;
      }
      return { ok: true, action: grant.action, message, delivered };
    } catch (e) {
      // The person's click was answered (someone else acted first): the token stays used.
      if (e instanceof DomainError) {
        const now = await this.d.store.get(grant.message);
        const code: RefusalCode = e.code === "stale_revision" ? "stale_revision" : e.code === "forbidden" || e.code === "self_approval" ? "forbidden" : e.code === "already_approved" ? "already" : isDigestConflict(e) ? "changed" : "closed";
        return { ok: false, code, grant, message: now };
      }
      // Not the person's doing (Redis unreachable, a bug): give the token back so the link still works.
      await this.d.tokens.unclaim(grant).catch(() => {});
      throw e;
    }
  }
}

function validateFields(action: LinkAction, f: LinkForm): FormErrors | null {
  if (APPROVALS.includes(action)) return f.comment !== undefined && f.comment.length > 2000 ? { comment: "at most 2,000 characters" } : null;
  const rejects = action === "reject" || action === "rejectCorrection";
  const schema = action === "reject" ? rejectInput : action === "rejectCorrection" ? rejectCorrectionInput : recallInput;
  const r = schema.safeParse(rejects ? { reason: f.reason ?? "" } : { reason: f.reason ?? "", ...(f.correctionText ? { correctionText: f.correctionText } : {}) });
  if (r.success) return null;
  const errors: FormErrors = {};
  for (const issue of r.error.issues) {
    const field = issue.path[0] as keyof FormErrors;
    errors[field] ??= field === "reason" && !(f.reason ?? "").trim() ? "say why (this goes into the audit trail" + (action === "recall" ? " and the dashboard)" : ")") : issue.message;
  }
  return errors;
}
