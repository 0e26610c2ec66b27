/**
 * The two pages a link in an email leads to: the confirmation page (GET /links/:token, changes
 * nothing) and the result page (after the POST, or any refusal). Rendered from
 * `templates/pages/` with the same rules as the emails: a private Handlebars instance, strict
 * mode, every value escaped. What the action is about is shown as it goes out (notify/as-sent.ts):
 * the text part verbatim in a <pre>, the HTML part in a sandboxed frame of its own (its inline
 * styles could not apply under this page's CSP), and the digest an approval names.
 *
 * The pages are served under `default-src 'self'`: no inline script and no `style` attribute
 * anywhere (hence `paragraphs` without its email inline style). Styling is /static/airlock.css;
 * /static/links.js only disables the submit button once the form is posted. Both files live in
 * `templates/static/`. Everything works without JavaScript.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Handlebars from "handlebars";
import type { ConfirmPageData, LinkAction, ResultPageData } from "../notify/notification-data.js";
import { oneLine, registerFormatHelpers, summaryView } from "../mail/notifications.js";
import { registerMailHelpers, templatesDir } from "../mail/render.js";

export interface PageRenderer {
  confirm(d: ConfirmPageData): string;
  result(d: ResultPageData): string;
}

/**
 * Per action: the question (title and h1), the button and its colour, what pressing it does, and
 * the hint under the reason field (actions that take one).
 */
const ACTIONS: Record<LinkAction, { title: string; submit: string; tone: "approve" | "reject" | "recall"; lead: string; reasonHint?: string }> = {
  approve: {
    title: "Approve this message?",
    submit: "Approve",
    tone: "approve",
    lead: "Check the message below, both parts, exactly as they will be sent. Nothing happens until you press Approve; your approval names the digest shown.",
  },
  reject: {
    title: "Reject this message?",
    submit: "Reject",
    tone: "reject",
    lead: "Nothing happens until you press Reject. The author sees your reason and can edit the message and submit it again.",
    reasonHint: "The author sees this reason. Nothing is sent.",
  },
  recall: {
    title: "Recall this message?",
    submit: "Recall message",
    tone: "recall",
    lead: "Recalling stops all further sending. Nothing happens until you press Recall message.",
    reasonHint: "Kept in the audit trail and shown on the dashboard; it is not mailed to recipients.",
  },
  approveCorrection: {
    title: "Approve this correction?",
    submit: "Approve correction",
    tone: "approve",
    lead: "Check the correction below, both parts, exactly as they would go out to everyone who received the message. Nothing happens until you press Approve correction; your approval names the digest shown.",
  },
  rejectCorrection: {
    title: "Reject this correction text?",
    submit: "Reject text",
    tone: "reject",
    lead: "Nothing happens until you press Reject text. Then the standard correction (the message was sent in error) goes out instead.",
    reasonHint: "Kept in the audit trail and shown on the dashboard. The standard correction goes instead.",
  },
};

const TONES: Record<ResultPageData["tone"], string> = { success: "Done", info: "Nothing to do", warning: "Not done" };

export function createPageRenderer(dir = templatesDir()): PageRenderer {
  const hb = Handlebars.create();
  registerMailHelpers(hb, { inlineStyles: false });
  registerFormatHelpers(hb);
  const compile = (file: string) => hb.compile(readFileSync(join(dir, "pages", file), "utf8"), { strict: true });
  hb.registerPartial("layout", compile("layout.hbs"));
  hb.registerPartial("summary", compile("summary.hbs"));
  const confirmPage = compile("confirm.hbs");
  const resultPage = compile("result.hbs");

  return {
    confirm(d) {
      const a = ACTIONS[d.action];
      if (!a) throw new Error(`unknown link action: ${String(d.action)}`);
      const errors = { reason: d.errors?.reason || null, comment: d.errors?.comment || null, correctionText: d.errors?.correctionText || null };
      return confirmPage({
        pageTitle: errors.reason || errors.comment || errors.correctionText ? `Error: ${a.title}` : a.title,
        withScript: true,
        heading: a.title,
        lead: a.lead,
        submitLabel: a.submit,
        buttonTone: a.tone,
        action: d.action,
        hasComment: d.action === "approve" || d.action === "approveCorrection",
        hasReason: a.reasonHint !== undefined,
        reasonHint: a.reasonHint ?? "",
        isRecall: d.action === "recall",
        isCorrection: d.action === "approveCorrection" || d.action === "rejectCorrection",
        // An approval names what the page showed: the form carries its digest.
        carriesDigest: d.action === "approve" || d.action === "approveCorrection",
        mail: { ...d.mail, subject: oneLine(d.mail.subject), from: oneLine(d.mail.from) },
        htmlPreviewUrl: d.htmlPreviewUrl,
        submittedDigest: d.submittedDigest || null,
        domains: d.domains.map((a) => ({ ...a, name: oneLine(a.name) })),
        recall: d.recall ? { by: oneLine(d.recall.by), reason: d.recall.reason } : null,
        formAction: d.formAction,
        holderName: d.holderName,
        message: summaryView(d.message),
        stateLabel: d.stateLabel,
        approvalsRequired: d.approvalsRequired,
        approvalsGiven: d.approvalsGiven,
        releaseAt: d.releaseAt || null,
        delivered: d.delivered,
        values: { comment: d.values.comment ?? "", reason: d.values.reason ?? "", correctionText: d.values.correctionText ?? "" },
        errors,
      });
    },
    result(d) {
      // An unknown tone falls back to the neutral one rather than an unstyled page.
      const tone = Object.hasOwn(TONES, d.tone) ? d.tone : "info";
      return resultPage({
        pageTitle: d.heading,
        withScript: false,
        tone,
        toneLabel: TONES[tone],
        heading: d.heading,
        detail: d.detail,
        message: d.message ? summaryView(d.message) : null,
        dashboardUrl: d.dashboardUrl,
      });
    },
  };
}
