/**
 * What every purge connector (imap, graph, gmail) promises: remove one recalled
 * message, found by its Message-ID, from one recipient's mailbox, and nothing else (SPEC "Recall
 * into the mailboxes", promise 10).
 *
 * The contract:
 * - `purge` resolves, it never rejects: every problem is a `failed` result. `retry: true` means
 *   the same call may succeed later (connection lost, mailbox locked, server busy, a timeout);
 *   `retry: false` means it will not without someone changing something (admin credentials
 *   refused, no such mailbox, a server that cannot delete safely).
 * - At least once, idempotent: a caller may repeat a purge after a crash or a `failed` with
 *   `retry: true`. A purge of a message that is no longer there answers `not_found`, so the second
 *   purge of the same message answers `not_found`. A `failed` purge may have removed some copies
 *   before it failed (its reason says how many and where): a later `not_found` for the same
 *   recipient then means those were the only ones, so the caller should keep what an earlier
 *   attempt removed rather than overwrite it.
 * - `purged` means at least one copy was removed and every copy found is gone (`removed` copies,
 *   from the `folders` named); `not_found` means no copy was found in the folders searched.
 * - Only the named recipient's own mailbox is touched (never shared or other users' folders), and
 *   only messages whose own Message-ID is exactly the one asked for: see `sameMessageId`.
 */

export type PurgeResult =
  | { outcome: "purged"; removed: number; folders: string[] }
  | { outcome: "not_found" }
  | { outcome: "failed"; reason: string; retry: boolean };

export interface PurgeConnector {
  /**
   * @param mailbox the recipient's address, as the message was delivered to it.
   * @param messageId the original's Message-ID with its angle brackets, as in the header
   *   (`<abc@corp.example>`).
   */
  purge(mailbox: string, messageId: string): Promise<PurgeResult>;
  /** Starts no new purge, waits for the running ones (each bounded by its timeouts). Always resolves. */
  close(): Promise<void>;
}

/**
 * What a purge accepts as a Message-ID: `<`, then printable ASCII without spaces or angle
 * brackets, then `>` (RFC 5322 msg-id, with its `@` made optional: old systems omit it). Anything
 * else is refused before a server is asked, so that a search string can never be empty, a
 * wildcard-like fragment or carry line breaks.
 */
const MESSAGE_ID = /^<[\x21-\x3b\x3d\x3f-\x7e]+>$/;
/** RFC 5322 caps a line at 998 characters; no real Message-ID comes near. */
const MAX_MESSAGE_ID = 900;

export function isValidMessageId(messageId: string): boolean {
  return messageId.length <= MAX_MESSAGE_ID && MESSAGE_ID.test(messageId);
}

/**
 * The Message-ID header values of a header block (all of them: a message may carry the field
 * twice), unfolded (RFC 5322 2.2.3: a line break followed by a space or tab continues the field)
 * and trimmed.
 */
export function messageIdsOf(headerBlock: string): string[] {
  const unfolded = headerBlock.replace(/\r?\n(?=[ \t])/g, "");
  const ids: string[] = [];
  for (const line of unfolded.split(/\r?\n/)) {
    const m = /^message-id[ \t]*:(.*)$/i.exec(line); // field names are case-insensitive (RFC 5322 1.2.2)
    if (m) ids.push(m[1]!.trim());
  }
  return ids;
}

/**
 * Whether a message whose header block is `headerBlock` is the message `messageId` names: it has
 * a Message-ID field, and every Message-ID field it has is exactly `messageId` once trimmed
 * (after unfolding), angle brackets included. Exact string equality, so case-sensitive as a
 * whole: RFC 5322 gives the local part no case-insensitivity and Airlock wrote the header it
 * looks for, so a copy whose ID differs in any character is another message. Comments or
 * anything else beside the ID make it no match. Servers' `SEARCH HEADER` ignores case and
 * matches substrings: every hit goes through this before anything is deleted. Erring this way
 * can only leave a copy in place (reported `not_found`), never delete another message.
 */
export function sameMessageId(headerBlock: string, messageId: string): boolean {
  const ids = messageIdsOf(headerBlock);
  return ids.length > 0 && ids.every((id) => id === messageId);
}
