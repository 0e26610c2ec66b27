/**
 * The two pages a link in an email leads to: the confirmation page (GET /links/:token, changes
 * nothing) and the result page (after the POST, or any refusal). Rendered from
 * `templates/pages/` with the same rules as the emails: a private Handlebars instance, strict
 * mode, every value escaped, the author's body only through `sanitizeHtml` / `paragraphs`.
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
import { registerFormatHelpers, summaryView } from "../mail/notifications.js";
import { registerMailHelpers, templatesDir } from "../mail/render.js";

export interface PageRenderer {
  confirm(d: ConfirmPageData): string;
  result(d: ResultPageData): string;
}

/** Per action: the question (title and h1), the button, and what pressing it does. */
const ACTIONS: Record<LinkAction, { title: string; submit: string; lead: string }> = {
  approve: {
    title: "Approve this message?",
    submit: "Approve",
    lead: "Check the message below. Nothing happens until you press Approve.",
  },
  reject: {
    title: "Reject this message?",
    submit: "Reject",
    lead: "Nothing happens until you press Reject. The author sees your reason and can edit the message and submit it again.",
  },
  recall: {
    title: "Recall this message?",
    submit: "Recall message",
    lead: "Recalling stops all further sending. Nothing happens until you press Recall message.",
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
        action: d.action,
        isApprove: d.action === "approve",
        isReject: d.action === "reject",
        isRecall: d.action === "recall",
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
