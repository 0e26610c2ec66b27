/**
 * Domain errors, with their codes in one map. The domain never speaks HTTP: the HTTP layer maps
 * each code to a status in one place (http/errors.ts).
 */
export const ERROR_CODES = {
  invalid_input: "the input failed validation; details name the fields",
  unauthenticated: "no token, or a token nobody holds",
  forbidden: "the user's roles do not allow this",
  self_approval: "nobody approves their own message",
  not_found: "no such message, audience or route",
  conflict: "the message's state does not allow this action",
  stale_revision: "the message changed since this revision",
  already_approved: "this approver already approved this revision",
  too_large: "the input is larger than allowed",
  unsupported_media_type: "wrong content type",
  rate_limited: "too many requests",
  mail_refused: "the mail server refused or could not take a mail sent on the user's behalf (a test send); nothing changed",
  directory_not_configured: "a directory audience was named or defined, but no directory (DIRECTORY_URL) is configured",
  directory_group_not_found: "the directory has no such group (or the DN names something that is not a group)",
  directory_empty: "the directory group resolved to no recipient: refused unless an admin confirms it (details name the numbers)",
  directory_change_refused: "the directory group changed by more than DIRECTORY_MAX_CHANGE_PERCENT since its last resolution: refused unless an admin confirms it (details name the numbers)",
  directory_unavailable: "the directory could not be reached, or refused the bind: nothing was resolved or frozen",
  directory_failed: "the directory refused a search or stopped it at a limit, or its data is inconsistent: nothing was resolved or frozen",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

/** A `conflict` whose details name the current digest: what was reviewed no longer builds the same. */
export function isDigestConflict(e: DomainError): boolean {
  return e.code === "conflict" && typeof e.details === "object" && e.details !== null && "digest" in e.details;
}

export class DomainError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = "DomainError";
  }
}

/**
 * A change committed on the Redis primary that fewer than REDIS_MIN_REPLICAS_ACK replicas
 * confirmed (Redis WAIT) within REDIS_REPLICA_ACK_TIMEOUT_MS. Not a refusal (not a DomainError):
 * the action may well stand, but it is not known to survive a failover, so it is not answered
 * with success. HTTP 503 `not_replicated`; a retry confirms it or answers that it is done already.
 */
export class ReplicationLagError extends Error {
  readonly code = "not_replicated";
  /** The script's answer (the change it made on the primary): what must follow it is still carried out. */
  answer?: unknown;

  constructor(
    readonly acknowledged: number,
    readonly required: number,
    timeoutMs: number,
    options?: { cause?: unknown },
  ) {
    super(
      `the action was recorded on the Redis primary but not yet on ${required} replica${required === 1 ? "" : "s"} (${acknowledged} confirmed within ${timeoutMs} ms): it may be lost if the primary fails now. It may be retried: a retry confirms it, or answers that it was already done`,
      options,
    );
    this.name = "ReplicationLagError";
  }
}
