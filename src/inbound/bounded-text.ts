/**
 * Text received from outside, made fit to keep: control characters and line separators become
 * spaces (or are dropped in multi-line text), and the length is bounded without splitting a
 * surrogate pair. What comes out goes to the audit trail, the dashboard and notification mails.
 */

const CONTROL_LINE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;
const CONTROL_BODY = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029]+/g;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** One line: controls to spaces, whitespace collapsed, at most `max` UTF-16 units (an ellipsis marks a cut). */
export function oneLine(s: string, max: number): string {
  return truncate(s.replace(LONE_SURROGATE, "\ufffd").replace(CONTROL_LINE, " ").replace(/\s+/g, " ").trim(), max);
}

/** Several lines ("\n" kept, tabs to spaces, other controls dropped), at most `max` UTF-16 units. */
export function someLines(s: string, max: number): string {
  return truncate(s.replace(LONE_SURROGATE, "\ufffd").replace(/\r\n?/g, "\n").replace(/\t/g, " ").replace(CONTROL_BODY, ""), max);
}

function truncate(s: string, max: number): string {
  if (s.length <= max) return s;
  let end = max - 1;
  const code = s.charCodeAt(end - 1);
  if (code >= 0xd800 && code <= 0xdbff) end--; // never keep half a surrogate pair
  return `${s.slice(0, end).trimEnd()}…`;
}
