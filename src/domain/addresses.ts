/**
 * Strict validation of one recipient address. Pure, no I/O.
 *
 * Deliberately much narrower than RFC 5322: an address that reaches an SMTP envelope or a
 * header must not be able to smuggle a second recipient (commas, quotes, angle brackets) or a
 * header (CR/LF). Real corporate addresses never need the exotic forms, so refusing them costs
 * nothing and closes whole classes of injection.
 */

export type NormalizedAddress = { ok: true; address: string } | { ok: false; reason: string };

const MAX_LOCAL = 64; // RFC 5321 §4.5.3.1.1
const MAX_TOTAL = 254; // RFC 5321 path limit (256) minus the angle brackets
const MAX_LABEL = 63; // DNS label limit

/** Dot-atom local part: the RFC 5322 atext set, dots only between atoms. */
const LOCAL_ATOM = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+$/;
/** LDH label (punycode `xn--` labels fit it too). */
const LABEL = /^[a-z0-9-]+$/;

/** True when `s` contains a C0 control character (incl. CR, LF, TAB, NUL) or DEL. */
export function hasControlChars(s: string): boolean {
  return /[\x00-\x1f\x7f]/.test(s);
}

export function normalizeAddress(raw: string): NormalizedAddress {
  if (typeof raw !== "string") return fail("not a string");
  // Checked before trimming: a CR/LF anywhere, even trailing, means the input was not a plain address.
  if (hasControlChars(raw)) return fail("contains control characters");
  const trimmed = raw.trim();
  if (trimmed === "") return fail("is empty");
  // Checked before lower-casing: toLowerCase folds some non-ASCII letters into ASCII (the
  // Kelvin sign becomes "k"), which would let a look-alike address pass as a different one.
  if (/[^\x20-\x7e]/.test(trimmed)) return fail("contains non-ASCII characters (use punycode for the domain)");
  const address = trimmed.toLowerCase();

  if (address.includes('"')) return fail("contains a quote (quoted local parts are not accepted)");
  if (address.includes(",")) return fail("contains a comma");
  if (/[<>]/.test(address)) return fail("contains angle brackets");
  // After the specific checks above, so that a pasted list reports the comma, not the space.
  if (/\s/.test(address)) return fail("contains whitespace");
  const at = address.split("@");
  if (at.length !== 2) return fail(at.length === 1 ? "has no @" : "has more than one @");
  const [local = "", domain = ""] = at;
  if (address.length > MAX_TOTAL) return fail(`is longer than ${MAX_TOTAL} characters`);

  const localProblem = checkLocal(local);
  if (localProblem) return fail(localProblem);
  const domainProblem = checkDomain(domain);
  if (domainProblem) return fail(domainProblem);
  return { ok: true, address };
}

function checkLocal(local: string): string | null {
  if (local === "") return "has an empty local part";
  if (local.length > MAX_LOCAL) return `has a local part longer than ${MAX_LOCAL} characters`;
  if (local.startsWith(".") || local.endsWith(".")) return "has a local part starting or ending with a dot";
  if (local.includes("..")) return "has two dots in a row in the local part";
  if (!local.split(".").every((atom) => LOCAL_ATOM.test(atom))) return "has a character not allowed in the local part";
  return null;
}

function checkDomain(domain: string): string | null {
  if (domain === "") return "has an empty domain";
  const labels = domain.split(".");
  if (labels.length < 2) return "has a domain without a dot";
  for (const label of labels) {
    if (label === "") return "has an empty domain label";
    if (label.length > MAX_LABEL) return `has a domain label longer than ${MAX_LABEL} characters`;
    if (!LABEL.test(label)) return "has a character not allowed in the domain";
    if (label.startsWith("-") || label.endsWith("-")) return "has a domain label starting or ending with a hyphen";
  }
  return null;
}

function fail(reason: string): NormalizedAddress {
  return { ok: false, reason };
}
