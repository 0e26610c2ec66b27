/**
 * The MIME message is built once per message (and once for its correction) per worker process,
 * then only the envelope changes per transaction. Bounded, so memory does not grow with history.
 */
import type { Message } from "../src/domain/message.js";
import { extractAddress } from "../src/domain/policies.js";
import { buildMime } from "../src/mail/mime.js";
import type { Renderer } from "../src/mail/render.js";
import type { MessageStore } from "../src/store/message-store.js";

export interface BuiltMail {
  raw: Buffer;
  envelopeFrom: string;
}

const MAX_ENTRIES = 32;

export class MimeCache {
  private readonly entries = new Map<string, Promise<BuiltMail>>();

  constructor(
    private readonly store: MessageStore,
    private readonly renderer: Renderer,
  ) {}

  get(id: string, kind: "original" | "correction"): Promise<BuiltMail> {
    const key = `${id}:${kind}`;
    let entry = this.entries.get(key);
    if (!entry) {
      entry = this.build(id, kind);
      entry.catch(() => this.entries.delete(key)); // a failed build is retried by the next transaction
      this.entries.set(key, entry);
      if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    }
    return entry;
  }

  private async build(id: string, kind: "original" | "correction"): Promise<BuiltMail> {
    const m = await this.store.get(id);
    if (!m) throw new Error(`message ${id} vanished`);
    return { raw: await (kind === "original" ? this.original(m) : this.correction(m)), envelopeFrom: extractAddress(m.from) };
  }

  private original(m: Message): Promise<Buffer> {
    const r = this.renderer.renderMessage({ subject: m.subject, text: m.text, html: m.html ?? undefined, from: m.from });
    return buildMime({ from: m.from, toHeader: m.toHeader, subject: r.subject, html: r.html, text: r.text, messageId: m.messageId, date: new Date(m.releaseAt ?? m.updatedAt) });
  }

  private correction(m: Message): Promise<Buffer> {
    const r = this.renderer.renderCorrection({
      originalSubject: m.subject,
      sentAt: m.releaseAt ? new Date(m.releaseAt) : null,
      reason: m.recall?.reason ?? "",
      correctionText: m.recall?.correctionText ?? undefined,
      from: m.from,
    });
    return buildMime({
      from: m.from,
      toHeader: m.toHeader,
      subject: r.subject,
      html: r.html,
      text: r.text,
      messageId: m.messageId.replace(/^<airlock\./, "<airlock-correction."),
      inReplyTo: m.messageId,
      references: m.messageId,
      date: new Date(m.recall?.at ?? m.updatedAt),
    });
  }
}
