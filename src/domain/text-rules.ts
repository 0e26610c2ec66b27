/**
 * What text may go into a mail: everything Unicode can say, except what cannot survive the trip
 * or changes its meaning on the way. Pure. Used by the input schemas, so a message that could not
 * be built is refused when it is saved or submitted, never discovered at release.
 */

/** Unpaired UTF-16 surrogates: UTF-8 cannot carry them (they would arrive as U+FFFD). */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
/** C0 controls, DEL, C1 controls; U+2028/U+2029, which end a line in some readers and not others. */
const LINE_BREAKING = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
/** Noncharacters: U+FDD0..U+FDEF and U+xxFFFE/U+xxFFFF, reserved for internal use, never interchanged. */
const NONCHARACTER = /[\ufdd0-\ufdef\ufffe\uffff]|[\ud83f\ud87f\ud8bf\ud8ff\ud93f\ud97f\ud9bf\ud9ff\uda3f\uda7f\udabf\udaff\udb3f\udb7f\udbbf\udbff][\udffe\udfff]/;
/** Controls a body may hold: tab, line feed, carriage return (normalised to CRLF by the MIME build). */
const BODY_CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f]/;

/** Why a one-line value (subject, display name) cannot go into a header, or null. */
export function headerTextProblem(s: string): string | null {
  if (LONE_SURROGATE.test(s)) return "contains an unpaired surrogate (not valid Unicode)";
  if (LINE_BREAKING.test(s)) return "must not contain control characters or line separators (CR, LF, tab, U+2028, U+2029…)";
  if (NONCHARACTER.test(s)) return "contains a Unicode noncharacter";
  return null;
}

/** Why a body (plain text, Markdown, HTML source) cannot go into a mail, or null. */
export function bodyTextProblem(s: string): string | null {
  if (LONE_SURROGATE.test(s)) return "contains an unpaired surrogate (not valid Unicode)";
  if (BODY_CONTROL.test(s)) return "contains a control character other than tab and line breaks";
  if (NONCHARACTER.test(s)) return "contains a Unicode noncharacter";
  return null;
}
