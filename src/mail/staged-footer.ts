/**
 * The "Report a problem with this message" footer of a staged send's early waves (issue 16): a
 * line after a signature separator in the plain-text part, a small paragraph at the end of the
 * HTML part's body. The URL is the message's signed report link (waves/report-link.ts). Not
 * idempotent: applied once, when the early waves' mail is built.
 */

export interface MailParts {
  text: string;
  /** null for a text-only message: it stays so. */
  html: string | null;
}

export const FOOTER_LEAD = "Something wrong with this message? Report it:";

/** Inline styles only: mail clients drop <style> blocks and external sheets. */
const PARAGRAPH_STYLE = "margin:24px 0 0;font-size:12px;line-height:1.5;color:#555555;";

export function stagedFooter(parts: MailParts, reportUrl: string): MailParts {
  // The URL goes on one line of the text part and into an attribute: it must be one clean token.
  if (!/^https?:\/\/[^\s\u0000-\u001f\u007f]+$/.test(reportUrl)) throw new RangeError(`not a report URL: ${JSON.stringify(reportUrl)}`);
  const body = parts.text.replace(/(?:\r?\n)+$/, "");
  const text = `${body ? `${body}\n\n` : ""}-- \n${FOOTER_LEAD} ${reportUrl}\n`;
  return { text, html: parts.html === null ? null : withParagraph(parts.html, reportUrl) };
}

function withParagraph(html: string, url: string): string {
  const u = escapeHtml(url);
  const p = `<p style="${PARAGRAPH_STYLE}">${escapeHtml(FOOTER_LEAD)} <a href="${u}">${u}</a></p>`;
  const lower = html.toLowerCase();
  const at = lower.lastIndexOf("</body>");
  const end = at >= 0 ? at : lower.lastIndexOf("</html>");
  return end >= 0 ? `${html.slice(0, end)}${p}\n${html.slice(end)}` : `${html}\n${p}\n`;
}

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}
