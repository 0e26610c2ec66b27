/**
 * The compose form as values (exactly what was typed, kept on every answer) and as the API's input
 * (read with the API's own schemas, domain/message-input.ts), and every refusal as a sentence next to
 * the field it is about. Pure: no HTTP, no I/O.
 */
import type { z } from "zod";
import type { Message } from "../../domain/message.js";
import { draftInput, messageInput, MAX_EXPLICIT_ADDRESSES, type DraftInput, type MessageInput } from "../../domain/message-input.js";
import { parseMailbox } from "../../domain/sender.js";
import { formatDuration } from "../../notify/format.js";

/** The form's fields, in page order; `audience` is the fieldset of lists and addresses together. */
export const COMPOSE_FIELDS = ["subject", "from", "audience", "lists", "addresses", "template", "markdown", "holdMinutes", "sendAt"] as const;
export type ComposeField = (typeof COMPOSE_FIELDS)[number];
export type FieldErrors = Partial<Record<ComposeField, string>>;

/** What the form holds, as typed. */
export interface ComposeValues {
  subject: string;
  /** The chosen sender's address ("" for the default). */
  from: string;
  lists: string[];
  /** Explicit addresses, as typed: one per line (commas, semicolons and spaces separate too). */
  addresses: string;
  markdown: string;
  template: string;
  holdMinutes: string;
  /** `YYYY-MM-DDTHH:MM` in UTC (a datetime-local field), or a full ISO 8601 date-time. */
  sendAt: string;
}

export const blankValues = (): ComposeValues => ({ subject: "", from: "", lists: [], addresses: "", markdown: "", template: "", holdMinutes: "", sendAt: "" });

const str = (v: unknown) => (typeof v === "string" ? v : "");
/** Browsers send a textarea's line breaks as CRLF; the stored text keeps what was typed, with LF. */
const lf = (s: string) => s.replace(/\r\n?/g, "\n");

export function valuesFromForm(body: Record<string, unknown>): ComposeValues {
  const lists = Array.isArray(body.lists) ? body.lists : body.lists === undefined ? [] : [body.lists];
  return {
    subject: str(body.subject),
    from: str(body.from),
    lists: [...new Set(lists.filter((l): l is string => typeof l === "string" && l !== ""))],
    addresses: lf(str(body.addresses)),
    markdown: lf(str(body.markdown)),
    template: str(body.template),
    holdMinutes: str(body.holdMinutes).trim(),
    sendAt: str(body.sendAt).trim(),
  };
}

/** A stored message as the form shows it. A body given as text through the API is shown as Markdown source. */
export function valuesFromMessage(m: Message, holdMinSeconds: number): ComposeValues {
  const from = m.from ? parseMailbox(m.from) : null;
  return {
    subject: m.subject,
    from: from?.ok ? from.mailbox.address : "",
    lists: [...m.audience.lists],
    addresses: m.audience.addresses.join("\n"),
    markdown: m.markdown || m.text,
    template: m.template,
    // The minimum is the empty field: a draft then follows the configured minimum.
    holdMinutes: m.holdSeconds > holdMinSeconds ? String(Math.round((m.holdSeconds / 60) * 10_000) / 10_000) : "",
    sendAt: m.sendAt ? new Date(m.sendAt).toISOString().slice(0, 16) : "",
  };
}

/** Whether saving `b` over `a` would change anything. */
export function sameValues(a: ComposeValues, b: ComposeValues): boolean {
  const norm = (v: ComposeValues) => ({ ...v, addresses: addressTokens(v.addresses).map((t) => t.toLowerCase()), markdown: v.markdown, template: v.markdown.trim() ? v.template : "" });
  return JSON.stringify(norm(a)) === JSON.stringify(norm(b));
}

export function addressTokens(raw: string): string[] {
  return raw.split(/[\s,;]+/).filter((t) => t !== "");
}

/** `YYYY-MM-DDTHH:MM[:SS]` is read as UTC (the page says so); a value with its own offset keeps it. */
export function sendAtIso(raw: string): string | null {
  const withZone = /(Z|[+-]\d\d:\d\d)$/i.test(raw) ? raw : `${raw}Z`;
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/i.test(withZone)) return null;
  const ms = Date.parse(withZone);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : null;
}

export const holdMinLabel = (holdMinSeconds: number) => formatDuration(holdMinSeconds);

export type Parsed<T> = { ok: true; input: T } | { ok: false; errors: FieldErrors };

/**
 * The form as the API's input: a draft (`complete: false`; every field optional, each one valid) or
 * a complete message to submit. The hold below the minimum is refused here, with the minimum named
 * (the API raises it to the minimum; a person is told).
 */
export function parseCompose(v: ComposeValues, opts: { complete: true; holdMinSeconds: number }): Parsed<MessageInput>;
export function parseCompose(v: ComposeValues, opts: { complete: false; holdMinSeconds: number }): Parsed<DraftInput>;
export function parseCompose(v: ComposeValues, opts: { complete: boolean; holdMinSeconds: number }): Parsed<MessageInput | DraftInput> {
  const errors: FieldErrors = {};
  let holdMinutes: number | undefined;
  if (v.holdMinutes !== "") {
    const n = Number(v.holdMinutes.replace(",", "."));
    if (!Number.isFinite(n) || n <= 0) errors.holdMinutes = "Give the hold as a number of minutes.";
    else if (Math.round(n * 60) < opts.holdMinSeconds) errors.holdMinutes = `The hold is at least ${holdMinLabel(opts.holdMinSeconds)}.`;
    else holdMinutes = n;
  }
  let sendAt: string | undefined;
  if (v.sendAt !== "") {
    const iso = sendAtIso(v.sendAt);
    if (iso === null) errors.sendAt = "Give the send time as a date and a time (UTC), for example 2026-12-24T09:00.";
    else sendAt = iso;
  }
  const tokens = addressTokens(v.addresses);
  const hasBody = v.markdown.trim() !== "";
  const raw: Record<string, unknown> = {
    ...(opts.complete || v.subject.trim() ? { subject: v.subject } : {}),
    ...(opts.complete || hasBody ? { markdown: v.markdown } : {}),
    ...(hasBody && v.template ? { template: v.template } : {}),
    ...(v.from ? { from: v.from } : {}),
    ...(opts.complete || v.lists.length || tokens.length ? { audience: { ...(v.lists.length ? { lists: v.lists } : {}), ...(tokens.length ? { addresses: tokens } : {}) } } : {}),
    ...(holdMinutes !== undefined ? { holdMinutes } : {}),
    ...(sendAt !== undefined ? { sendAt } : {}),
    ...(opts.complete ? {} : { draft: true }),
  };
  const parsed = (opts.complete ? messageInput : draftInput).safeParse(raw);
  if (!parsed.success) addIssues(errors, parsed.error.issues, tokens);
  if (Object.keys(errors).length > 0 || !parsed.success) return { ok: false, errors };
  return { ok: true, input: parsed.data };
}

function addIssues(errors: FieldErrors, issues: z.core.$ZodIssue[], tokens: string[]): void {
  for (const i of issues) {
    const [field, message] = sentence(i.path.map((p) => (typeof p === "symbol" ? String(p) : p)), i.code, i.message, tokens);
    errors[field] ??= message;
  }
}

/**
 * The service's refusal details (`[{path, message}]`, paths under `body` or `draft`) as field
 * errors; what names no field is `general`.
 */
export function errorsFromDetails(details: unknown, tokens: string[]): { errors: FieldErrors; general: string[] } {
  const errors: FieldErrors = {};
  const general: string[] = [];
  for (const d of Array.isArray(details) ? details : []) {
    const path = Array.isArray((d as { path?: unknown }).path) ? ((d as { path: Array<string | number> }).path) : [];
    const message = String((d as { message?: unknown }).message ?? "");
    const rest = path[0] === "body" || path[0] === "draft" ? path.slice(1) : path;
    if (rest.length === 0 || !isKnownPath(rest)) {
      general.push(message);
      continue;
    }
    const [field, text] = sentence(rest, "custom", message, tokens);
    errors[field] ??= text;
  }
  return { errors, general };
}

const isKnownPath = (p: Array<string | number>) => ["subject", "from", "audience", "markdown", "text", "html", "template", "holdMinutes", "sendAt"].includes(String(p[0]));

const capital = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** One issue as the field it belongs to and a sentence a person reads. */
function sentence(path: Array<string | number>, code: string, message: string, tokens: string[]): [ComposeField, string] {
  switch (path[0]) {
    case "subject":
      if (code === "too_small" || code === "invalid_type") return ["subject", "Give the message a subject."];
      if (code === "too_big") return ["subject", "The subject may have at most 250 characters."];
      return ["subject", `The subject ${message}.`];
    case "markdown":
    case "text":
    case "html":
      if (code === "too_small" || code === "invalid_type" || /^required/.test(message)) return ["markdown", "Write the message."];
      if (code === "too_big") return ["markdown", "The message may have at most 200,000 characters."];
      return ["markdown", `The message ${message}.`];
    case "template":
      return ["template", `Choose one of the house templates (${message}).`];
    case "from":
      return ["from", `Choose one of your sender mailboxes: ${message}.`];
    case "holdMinutes":
      return ["holdMinutes", code === "too_big" ? "The hold may be at most 30 days (43,200 minutes)." : "Give the hold as a number of minutes."];
    case "sendAt":
      return ["sendAt", "Give the send time as a date and a time (UTC)."];
    case "audience":
      if (path[1] === "lists") return ["lists", code === "custom" ? capital(message) + "." : "Choose audience lists from the list."];
      if (path[1] === "addresses") {
        if (typeof path[2] === "number") {
          const why = message.replace(/^invalid address: /, "");
          const token = tokens[path[2]] ?? "";
          return ["addresses", token && why.toLowerCase().startsWith(token.toLowerCase()) ? `${why}.` : `“${token}” ${why}.`];
        }
        if (code === "too_big") return ["addresses", `At most ${MAX_EXPLICIT_ADDRESSES.toLocaleString("en-US")} addresses: upload a larger group as an audience.`];
        return ["addresses", capital(message) + "."];
      }
      return ["audience", code === "custom" && /no recipients/.test(message) ? "The message has no recipients." : "Choose at least one audience list, or type an address."];
    default:
      return ["markdown", capital(message) + "."];
  }
}
