/** Placeholder until the helper's version is merged: the report footer of a staged send's early waves. */
export function stagedFooter(parts: { text: string; html: string }, reportUrl: string): { text: string; html: string } {
  const esc = reportUrl.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  const p = `<p style="font-size:12px;color:#555">Something wrong with this message? <a href="${esc}">Report a problem with this message</a></p>`;
  const at = parts.html.lastIndexOf("</body>");
  return {
    text: `${parts.text}\n\n-- \nSomething wrong with this message? Report it: ${reportUrl}\n`,
    html: at < 0 ? parts.html + p : parts.html.slice(0, at) + p + parts.html.slice(at),
  };
}
