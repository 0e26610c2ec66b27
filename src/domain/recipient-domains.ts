/**
 * ALLOWED_RECIPIENT_DOMAINS: which domains recipients may be in. Pure, no I/O.
 *
 * A domain matches exactly, case-insensitively: `corp.example` allows `ann@corp.example` and not
 * `ann@eu.corp.example`. Subdomains are listed one by one. A suffix match would let anyone who
 * can get a name under the domain (a mail host, a test zone, a look-alike a registrar hands out)
 * receive internal mail, and "internal stays internal" is a promise, so it errs on the strict side.
 *
 * `undefined` for the allowed list means the setting is unset: every domain is allowed.
 */
import { normalizeAddress } from "./addresses.js";

/** The normalized allowed domains, or undefined when any domain is allowed. */
export type AllowedDomains = readonly string[] | undefined;

/** Offending addresses named in an error, at most; the count says how many there were in all. */
export const OUTSIDE_LISTED = 20;

/**
 * Field of an audience's recorded domains (store/keys.ts audienceDomains) counting the recipients
 * whose domain was not kept (beyond the most distinct domains recorded). Not a domain name (it has
 * a space and parentheses), so it never collides with one, and a check treats it as outside: which
 * domains it stands for is unknown.
 */
export const OTHER_DOMAINS = "(other domains)";

/** The domain of an address, lower-cased ("" when there is no "@"). */
export function domainOf(address: string): string {
  const at = address.lastIndexOf("@");
  return at < 0 ? "" : address.slice(at + 1).toLowerCase();
}

/** True when the address's domain is one of `allowed` exactly (see the module comment), or when any domain is allowed. */
export function isAllowedDomain(address: string, allowed: AllowedDomains): boolean {
  return allowed === undefined || allowed.includes(domainOf(address));
}

/** How many of `addresses` are outside `allowed`, and the first `limit` of them (in order). */
export function outsideAddresses(addresses: Iterable<string>, allowed: AllowedDomains, limit = OUTSIDE_LISTED): { count: number; first: string[] } {
  const out = { count: 0, first: [] as string[] };
  if (allowed === undefined) return out;
  for (const a of addresses) {
    if (isAllowedDomain(a, allowed)) continue;
    out.count += 1;
    if (out.first.length < limit) out.first.push(a);
  }
  return out;
}

/** The recorded domains (with their recipient counts) that are outside `allowed`; OTHER_DOMAINS always is. */
export function outsideDomains<T extends { domain: string }>(recorded: readonly T[], allowed: AllowedDomains): T[] {
  if (allowed === undefined) return [];
  return recorded.filter((d) => d.domain === OTHER_DOMAINS || !allowed.includes(d.domain.toLowerCase()));
}

/** "a@x, b@y and 3 more": names in a message, `shown` of them at most. */
export function nameSome(names: readonly string[], total: number, shown = 5): string {
  const listed = names.slice(0, shown);
  const more = total - listed.length;
  return more > 0 ? `${listed.join(", ")} and ${more} more` : listed.join(", ");
}

export type ParsedDomainList = { ok: true; domains: readonly string[] } | { ok: false; reason: string };

/**
 * Parses the setting: domains separated by commas (spaces around them ignored), lower-cased,
 * deduplicated. A domain is accepted when `postmaster@<domain>` is an address the rest of Airlock
 * accepts (domain/addresses.ts), so the two can never disagree about what a domain is.
 */
export function parseDomainList(raw: string): ParsedDomainList {
  const entries = raw.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (entries.length === 0) return { ok: false, reason: "names no domain (leave it unset to allow any)" };
  const domains: string[] = [];
  for (const entry of entries) {
    const shown = JSON.stringify(entry.slice(0, 80));
    if (entry.includes("@")) return { ok: false, reason: `${shown} is not a domain: give the domain alone (corp.example)` };
    if (entry.includes("*")) return { ok: false, reason: `${shown}: wildcards are not supported; list each domain (subdomains are not included)` };
    const r = normalizeAddress(`postmaster@${entry}`);
    if (!r.ok) return { ok: false, reason: `${shown} is not a domain name (an address in it ${r.reason})` };
    const domain = domainOf(r.address);
    if (!domains.includes(domain)) domains.push(domain);
  }
  return { ok: true, domains: Object.freeze(domains) };
}
