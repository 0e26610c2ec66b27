/**
 * The dashboard's history: messages in some states whose subject and author contain the words
 * asked for, newest first, paged. There is no index on subjects: a page walks the time index
 * newest first and reads messages in pipelined chunks until it has `limit` matches or has looked
 * at `scanLimit` messages, and its cursor says where to go on. A request is therefore bounded
 * however many messages there are; a rare search may answer a short page with "more".
 */
import type { Redis } from "ioredis";
import type { State } from "../domain/lifecycle.js";
import { keys } from "./keys.js";

/** What a history row shows: read with one HMGET per message, never the bodies. */
export interface MessageRow {
  id: string;
  subject: string;
  author: string;
  state: State;
  recipientCount: number;
  updatedAt: string;
}

export interface SearchQuery {
  states: readonly State[];
  /** Case-insensitive substring of the subject. */
  subject?: string;
  /** Case-insensitive substring of the author's address. */
  author?: string;
  /** Offset in the time index, from a previous page. */
  cursor: number;
  limit: number;
  /** Messages examined at most per page. */
  scanLimit?: number;
}

/** Messages read from Redis per round trip. */
const CHUNK = 100;

export async function searchMessages(redis: Redis, q: SearchQuery): Promise<{ items: MessageRow[]; nextCursor: number | null; scanned: number }> {
  const scanLimit = q.scanLimit ?? 2000;
  const subject = q.subject?.trim().toLowerCase() ?? "";
  const author = q.author?.trim().toLowerCase() ?? "";
  const states = new Set<string>(q.states);
  const items: MessageRow[] = [];
  let offset = q.cursor;
  let scanned = 0;
  while (items.length < q.limit && scanned < scanLimit) {
    const ids = await redis.zrevrange(keys.messagesByTime(), offset, offset + CHUNK - 1);
    if (ids.length === 0) return { items, nextCursor: null, scanned };
    // One pipeline per chunk: a round trip for 100 messages, and only the fields a row shows.
    const pipe = redis.pipeline();
    for (const id of ids) pipe.hmget(keys.message(id), "id", "subject", "author", "state", "recipientCount", "updatedAt");
    const messages = ((await pipe.exec()) ?? []).map(([err, v]) => {
      const f = (err ? [] : (v as Array<string | null>)) as Array<string | null>;
      return f[0] ? { id: f[0], subject: f[1] ?? "", author: f[2] ?? "", state: f[3] as State, recipientCount: Number(f[4] ?? 0), updatedAt: new Date(Number(f[5] ?? 0)).toISOString() } : null;
    });
    for (const [i, m] of messages.entries()) {
      scanned++;
      if (m && states.has(m.state) && m.subject.toLowerCase().includes(subject) && m.author.toLowerCase().includes(author)) {
        items.push(m);
        if (items.length === q.limit) {
          offset += i + 1;
          return { items, nextCursor: offset, scanned };
        }
      }
    }
    offset += ids.length;
    if (ids.length < CHUNK) return { items, nextCursor: null, scanned };
  }
  return { items, nextCursor: offset, scanned };
}
