/** Audience upload errors: one code map, so routes translate them to HTTP in one place. */

export const AUDIENCE_ERRORS = {
  invalid_name: "The audience name must match ^[a-z0-9][a-z0-9-]{0,62}$.",
  invalid_recipient:
    "A row holds an address (or a name/department) that is refused, or addresses outside ALLOWED_RECIPIENT_DOMAINS (details: count, first rows); nothing was changed.",
  too_many_recipients:
    "The upload has more distinct recipients than the limit (details: max), or more rows, duplicates and empty lines included (details: maxRows); nothing was changed.",
  empty_audience: "The upload holds no recipient; an audience cannot be emptied by upload.",
  invalid_csv: "The CSV cannot be read (malformed, or no email column); nothing was changed.",
  invalid_json: "The JSON body is not {name, recipients: [{email, name?, department?}]}; nothing was changed.",
} as const;

export type AudienceErrorCode = keyof typeof AUDIENCE_ERRORS;

export class AudienceError extends Error {
  override readonly name = "AudienceError";

  constructor(
    readonly code: AudienceErrorCode,
    message: string = AUDIENCE_ERRORS[code],
    /** Safe to show the uploader: row/line numbers, the reason, the offending value (truncated). */
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}
