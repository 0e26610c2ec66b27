/**
 * The MIME message is built once per message (and once for its correction) per worker process,
 * then only the envelope changes per transaction. Bounded, so memory does not grow with history.
 * The build is mail/compose.ts, the same function the preview and the submit use; before anything
 * is handed to SMTP its digest must be the one every approval named (four eyes on every byte).
 */
import type { Message } from "../src/domain/message.js";
import { composeCorrection, composeOriginal, composeStaged, type ComposedMail } from "../src/mail/compose.js";
import type { Renderer } from "../src/mail/render.js";
import type { MessageStore } from "../src/store/message-store.js";

export type BuiltMail = ComposedMail;

/** The standard correction's word on the purge: removed from the mailbox, or maybe still there; null when no purge ran. */
export type Removal = "removed" | "kept" | null;

/** What was about to go out is not what was approved: nothing is sent, and ops are told why. */
export class UnapprovedMail extends Error {
  override name = "UnapprovedMail";
}

const MAX_ENTRIES = 32;

export class MimeCache {
  private readonly entries = new Map<string, Promise<BuiltMail>>();

  constructor(
    private readonly store: MessageStore,
    private readonly renderer: Renderer,
  ) {}

  /**
   * One small read per call (per batch job, not per transaction): the cache key is the message's
   * build stamp (MessageStore.buildStamp: revision, digest, release time, Message-ID, approvals,
   * correction), so a build is never reused for anything else (an id reused after Redis lost data
   * included); the whole message is read only to build.
   */
  async get(id: string, kind: "original" | "correction", removal: Removal = null, wave: "rest" | "early" = "rest"): Promise<BuiltMail> {
    const stamp = await this.store.buildStamp(id);
    if (!stamp) throw new Error(`message ${id} vanished`);
    const key = `${id}:${kind}:${removal ?? ""}:${wave}:${stamp}`;
    let entry = this.entries.get(key);
    if (!entry) {
      entry = this.build(id, kind, removal, wave);
      entry.catch(() => this.entries.delete(key)); // a failed build is retried by the next job
      this.entries.set(key, entry);
      if (this.entries.size > MAX_ENTRIES) this.entries.delete(this.entries.keys().next().value!);
    }
    return entry;
  }

  private async build(id: string, kind: "original" | "correction", removal: Removal, wave: "rest" | "early"): Promise<BuiltMail> {
    const m = await this.store.get(id);
    if (!m) throw new Error(`message ${id} vanished`);
    return kind === "original" ? this.original(m, wave) : this.correction(m, removal);
  }

  /**
   * The original; a staged send's in the variant its wave gets, both built and their joint digest
   * (compose.ts composeStaged) compared with the approvals: every byte of either was approved.
   */
  private async original(m: Message, wave: "rest" | "early"): Promise<BuiltMail> {
    let built: BuiltMail;
    let digest: string;
    try {
      const date = new Date(m.releaseAt ?? m.updatedAt);
      if (m.waves) {
        const marks = this.renderer.earlyWaveMarks;
        if (!marks) throw new Error("a staged send needs the early waves' marks (report link, reply address): this worker has none");
        const staged = await composeStaged(this.renderer, m, date, marks(m.id));
        built = wave === "early" ? staged.early : staged.rest;
        digest = staged.digest;
      } else {
        built = await composeOriginal(this.renderer, m, date);
        digest = built.digest;
      }
    } catch (e) {
      throw new UnapprovedMail(`message ${m.id} revision ${m.revision} cannot be built: ${(e as Error).message}`);
    }
    const unapproved = m.approvals.filter((a) => a.digest !== digest);
    if (m.approvals.length === 0 || unapproved.length > 0) {
      throw new UnapprovedMail(
        `message ${m.id} revision ${m.revision} builds with digest ${digest}, but ${unapproved.map((a) => `${a.by} approved ${a.digest ?? "no digest"}`).join(", ") || "nobody approved it"}`,
      );
    }
    return built;
  }

  /**
   * The standard correction (in the variant `removal` names, when a purge ran: at most two builds),
   * or the custom text once approved (never a text still pending or rejected; always the exact bytes
   * approved, so without the purge's sentence).
   */
  private async correction(m: Message, removal: Removal): Promise<BuiltMail> {
    const c = m.correction;
    const custom = c?.status === "approved" ? c.text : null;
    let built: BuiltMail;
    try {
      const sentAt = m.releaseAt ? new Date(m.releaseAt) : null;
      built = await composeCorrection(this.renderer, { original: m, sentAt, correctionText: custom, removal: custom === null ? removal : null }, new Date(m.recall?.at ?? m.updatedAt));
    } catch (e) {
      throw new UnapprovedMail(`message ${m.id}'s correction cannot be built: ${(e as Error).message}`);
    }
    if (c && custom !== null && c.required > 0) {
      const unapproved = c.approvals.filter((a) => a.digest !== built.digest);
      if (c.approvals.length < c.required || unapproved.length > 0) {
        throw new UnapprovedMail(`message ${m.id}'s correction builds with digest ${built.digest}, not the one approved (${c.approvals.map((a) => `${a.by}: ${a.digest}`).join(", ")})`);
      }
    }
    return built;
  }
}
