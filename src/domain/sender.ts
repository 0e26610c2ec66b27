/**
 * Who a message is from: one of the configured sender mailboxes, chosen by its address, shown
 * with its configured display name. Nobody writes as the CEO by typing a display name: the input
 * is parsed as RFC 5322 (nodemailer's address parser) and refused when it is anything but one
 * plain mailbox — a group, a second mailbox, an address or angle brackets inside the display name.
 */
import addressparser from "nodemailer/lib/addressparser";
import { normalizeAddress } from "./addresses.js";
import { headerTextProblem } from "./text-rules.js";

export interface Mailbox {
  /** Display name; "" for none. */
  name: string;
  /** Lower-cased address. */
  address: string;
}

export type ParsedMailbox = { ok: true; mailbox: Mailbox } | { ok: false; reason: string };

/** Parses one mailbox (`Name <a@b>`, `"Name" <a@b>`, `a@b`) strictly; see the module comment. */
export function parseMailbox(raw: string): ParsedMailbox {
  if (typeof raw !== "string" || raw.trim() === "") return { ok: false, reason: "is empty" };
  const problem = headerTextProblem(raw);
  if (problem) return { ok: false, reason: problem };
  // The parser is lenient ("A <x@y> <z@y>" gives one mailbox named "A z@y"): count the brackets first.
  if ((raw.match(/</g) ?? []).length > 1 || (raw.match(/>/g) ?? []).length > 1) return { ok: false, reason: "names more than one address" };
  const parsed = addressparser(raw, { flatten: false });
  if (parsed.length !== 1) return { ok: false, reason: "must be exactly one mailbox" };
  const [one] = parsed as Array<{ name?: string; address?: string; group?: unknown[] }>;
  if (!one || one.group) return { ok: false, reason: "must be a mailbox, not a group" };
  const name = (one.name ?? "").trim();
  if (/[@<>]/.test(name)) return { ok: false, reason: "the display name must not contain an address or angle brackets" };
  const address = normalizeAddress(one.address ?? "");
  if (!address.ok) return { ok: false, reason: `the address ${address.reason}` };
  return { ok: true, mailbox: { name, address: address.address } };
}

/**
 * The address of a configured or stored mailbox (MAIL_FROM, a message's `from`), parsed as strictly
 * as an input; throws when it is not one plain mailbox (MAIL_FROM is checked at start).
 */
export function addressOf(mailbox: string): string {
  const p = parseMailbox(mailbox);
  if (!p.ok) throw new Error(`sender ${JSON.stringify(mailbox)}: ${p.reason}`);
  return p.mailbox.address;
}

/** `Name <a@b>`, quoted when the name needs it; `a@b` without a name. Parses back to the same mailbox. */
export function formatMailbox(m: Mailbox): string {
  if (!m.name) return m.address;
  const plain = /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ .\u0080-\uffff]+$/.test(m.name) && !/^\.|\.$|\.\./.test(m.name);
  return `${plain ? m.name : `"${m.name.replace(/[\\"]/g, "\\$&")}"`} <${m.address}>`;
}

/**
 * The sender of a message: the configured mailbox whose address `input` names (the default
 * sender when `input` is absent). The display name is always the configured one.
 */
export function chooseSender(input: string | undefined, allowed: readonly Mailbox[]): { ok: true; mailbox: Mailbox } | { ok: false; reason: string } {
  const fallback = allowed[0];
  if (input === undefined) return fallback ? { ok: true, mailbox: fallback } : { ok: false, reason: "no sender is configured" };
  const parsed = parseMailbox(input);
  if (!parsed.ok) return parsed;
  const match = allowed.find((m) => m.address === parsed.mailbox.address);
  if (!match) return { ok: false, reason: `${parsed.mailbox.address} is not one of your sender mailboxes (${allowed.map((m) => m.address).join(", ")})` };
  return { ok: true, mailbox: match };
}
