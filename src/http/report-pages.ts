/**
 * The pages of the "Report a problem with this message" link (routes/report.ts): the form (GET,
 * changes nothing) and the result (thank you, or a refusal). Rendered like the approver link pages
 * (pages.ts): templates/pages/ with the same layout, a private Handlebars instance, strict mode,
 * every value escaped, no inline script or style.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Handlebars from "handlebars";
import { oneLine, registerFormatHelpers } from "../mail/notifications.js";
import { registerMailHelpers, templatesDir } from "../mail/render.js";

export interface ReportFormData {
  /** The path the form POSTs to (the same /report/:token). */
  formAction: string;
  subject: string;
  /** The note as submitted, when the form comes back with an error. */
  note: string;
  error: string | null;
  maxChars: number;
}

export interface ReportResultData {
  /** success: counted; info: nothing to do (already reported, not sent); warning: refused. */
  tone: "success" | "info" | "warning";
  heading: string;
  detail: string;
  /** The message's subject, when the link names one that exists. */
  subject: string | null;
}

export interface ReportPageRenderer {
  form(d: ReportFormData): string;
  result(d: ReportResultData): string;
}

const TONES: Record<ReportResultData["tone"], string> = { success: "Thank you", info: "Nothing to do", warning: "Not recorded" };
const FORM_TITLE = "Report a problem with this message?";

export function createReportPages(dir = templatesDir()): ReportPageRenderer {
  const hb = Handlebars.create();
  registerMailHelpers(hb, { inlineStyles: false });
  registerFormatHelpers(hb);
  const compile = (file: string) => hb.compile(readFileSync(join(dir, "pages", file), "utf8"), { strict: true });
  hb.registerPartial("layout", compile("layout.hbs"));
  const formPage = compile("report.hbs");
  const resultPage = compile("report-result.hbs");

  return {
    form(d) {
      return formPage({
        pageTitle: d.error ? `Error: ${FORM_TITLE}` : FORM_TITLE,
        // links.js: disables the button once the form is posted (no double POST).
        withScript: true,
        formAction: d.formAction,
        subject: oneLine(d.subject),
        note: d.note,
        error: d.error || null,
        maxChars: d.maxChars,
      });
    },
    result(d) {
      const tone = Object.hasOwn(TONES, d.tone) ? d.tone : "info";
      return resultPage({
        pageTitle: d.heading,
        withScript: false,
        tone,
        toneLabel: TONES[tone],
        heading: d.heading,
        detail: d.detail,
        subject: d.subject === null ? null : oneLine(d.subject),
      });
    },
  };
}
