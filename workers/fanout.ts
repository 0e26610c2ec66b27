/**
 * One fan-out batch: a range of the frozen recipient set, sent in SMTP transactions of up to
 * RECIPIENTS_PER_TRANSACTION recipients. Before each transaction the worker claims its recipients
 * in Redis; the claim is refused once the message was recalled, which is what makes a recall final.
 * A retried or duplicated job does no harm: claimed or finished recipients are never claimed again
 * (except those of a transaction cut off at an unknown point, which are counted).
 */
import type { Logger } from "pino";
import type { JobData } from "../src/queues/catalogue.js";
import type { FollowUps } from "../src/service/follow-ups.js";
import { AIRLOCK_ACTOR } from "../src/domain/message.js";
import { isAllowedDomain } from "../src/domain/recipient-domains.js";
import { canApply } from "../src/domain/lifecycle.js";
import type { FanoutOutcome, MessageStore } from "../src/store/message-store.js";
import { SmtpSendError, type MailTransport } from "../src/mail/transport.js";
import { recipientOutcome, transactionOutcome, type SmtpOutcome } from "../src/mail/smtp-outcome.js";
import type { Metrics } from "../src/metrics/metrics.js";
import { UnapprovedMail, type BuiltMail, type MimeCache } from "./mime-cache.js";
import type { Verp } from "../src/inbound/verp.js";

export interface FanoutDeps {
  store: MessageStore;
  followUps: FollowUps;
  transport: MailTransport;
  mime: MimeCache;
  config: { RECIPIENTS_PER_TRANSACTION: number; SEND_RATE_PER_SECOND: number; ALLOWED_RECIPIENT_DOMAINS?: readonly string[] };
  logger: Logger;
  sleep?: (ms: number) => Promise<void>;
  metrics?: Pick<Metrics, "smtpTransaction">;
  /** VERP return paths for a staged send's early waves (RETURN_PATH_DOMAIN), or absent. */
  verp?: Verp | null;
}

export class TemporaryBatchFailure extends Error {
  override name = "TemporaryBatchFailure";
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class FanoutProcessor {
  private readonly sleep: (ms: number) => Promise<void>;

  constructor(private readonly d: FanoutDeps) {
    this.sleep = d.sleep ?? defaultSleep;
  }

  /** Whether the fan-out of `id` is still held (asked by a batch job right after it parked itself). */
  async stillPaused(id: string): Promise<boolean> {
    return this.d.store.isPaused(id);
  }

  /**
   * `lastAttempt`: temporary failures are then recorded as failed instead of retried. Answers
   * `paused` when ops hold the fan-out: the caller puts the job aside to look again later.
   */
  async process(job: JobData<"batch">, lastAttempt: boolean): Promise<"done" | "paused" | { laterMs: number; first: number }> {
    const { id, kind } = job;
    // A staged send's early waves with VERP go one recipient per transaction, each its own claim: a
    // recall or a halt answered meanwhile stops the next one (promise 3), as for any transaction.
    const early = kind === "original" && job.wave !== undefined && job.wave < 3;
    const size = early && this.d.verp ? 1 : this.d.config.RECIPIENTS_PER_TRANSACTION;
    const rate = this.d.config.SEND_RATE_PER_SECOND;
    let first = job.first;
    // The previous transaction's settle, still in flight: it and the next claim travel to Redis
    // together (same connection, so Redis runs the settle first), one round trip per transaction
    // instead of two. A transaction with a temporary failure is settled before the job throws.
    let settling: Promise<void> | null = null;
    // Built (and checked against the approvals) before anything is claimed: a message that cannot
    // go out as approved puts nobody in flight, and is halted instead.
    // A staged send's early-wave job sends the early mail (compose.ts composeStaged), built once here.
    const mail = await this.mailOrHalt(id, kind, early ? "early" : "rest");
    if (mail === "halted") return "paused";
    try {
      while (first <= job.last) {
        const last = Math.min(job.last, first + size - 1);
        const [claim] = await Promise.all([this.d.store.claim(id, kind, first, last, rate, rate, job.last, kind === "original" ? job.wave : undefined), settling]);
        settling = null;
        if ("wait" in claim) {
          // The shared send-rate bucket is empty: wait until it has refilled enough for this transaction.
          await this.sleep(Math.min(claim.wait, 1000));
          continue;
        }
        // A staged send released but not planned yet: its waves' own jobs come with the plan.
        if ("held" in claim) return "done";
        if ("stopped" in claim) {
          // This refused claim may have been the last to see the original stop: it then names the correction.
          await this.d.followUps.carryOut(id, claim.followUps);
          return "done";
        }
        // Held by ops: nothing claimed. The same job carries on after the resume (from its first
        // index again: whoever is done is skipped by the claims).
        if ("paused" in claim) return "paused";
        // The standard correction waits for purge answers: the job is put aside (no worker slot held)
        // and carries on later from the transaction that waited (those before it are done).
        if ("purgeWait" in claim) return { laterMs: claim.purgeWait, first };
        if (claim.addresses.length > 0) {
          // Not buildable and not running any more (the claim proves otherwise): never send a stale build.
          if (!mail) throw new Error(`message ${id} ${kind}: claimed recipients without an approved build`);
          const outcomes = claim.variants
            ? await this.deliverVariants(id, claim.addresses, claim.indexes, claim.variants, lastAttempt)
            : early
              ? await this.deliverEarly(id, mail, claim.addresses, claim.indexes, lastAttempt)
              : await this.deliverInside(kind, mail, claim.addresses, claim.indexes, lastAttempt);
          const temporary = outcomes.find((o) => o.outcome === "t" || o.outcome === "a");
          if (temporary) {
            await this.settle(id, kind, outcomes);
            // On the record: the audit shows each retried transaction (the backoff is the time between entries).
            const retried = outcomes.filter((o) => o.outcome === "t" || o.outcome === "a").length;
            await this.d.store.note(id, "worker", "smtpRetry", { kind, recipients: retried, ambiguous: temporary.outcome === "a", reply: temporary.reply.slice(0, 300) });
            throw new TemporaryBatchFailure(`message ${id} ${kind}: ${temporary.reply}`);
          }
          settling = this.settle(id, kind, outcomes);
          settling.catch(() => {}); // awaited below; until then a rejection must not count as unhandled
        }
        // A scan of a staged send's early waves looked further than one transaction's range.
        first = Math.max(last + 1, claim.next);
      }
      return "done";
    } finally {
      // If this settle failed while the next claim succeeded, that claim's recipients stay in flight
      // and the retry counts them as possible duplicates: over-counted, never lost (like a crash).
      if (settling) await settling;
    }
  }

  /**
   * The mail to send, or — when what would go out is not what was approved (mail/compose.ts
   * digest), or cannot be built — the message halted with the reason (an ops pause by Airlock:
   * on the dashboard, in the audit trail, mailed to ops) and "halted". A resume builds and checks
   * again. null: not buildable, but the fan-out is not running either (a claim will say stopped).
   */
  private async mailOrHalt(id: string, kind: "original" | "correction", wave: "rest" | "early"): Promise<BuiltMail | "halted" | null> {
    try {
      return await this.d.mime.get(id, kind, null, wave);
    } catch (e) {
      if (!(e instanceof UnapprovedMail)) throw e;
      // Only the fan-out that would send this mail is halted: an original's batch re-driven after a
      // recall must not hold the correction.
      const m = await this.d.store.get(id);
      if (!m || !canApply(kind === "original" ? "finish" : "finishCorrection", m.state)) return null;
      const a = await this.d.store.pauseOrResume("pause", id, AIRLOCK_ACTOR, `not sent: ${e.message}`.slice(0, 2000));
      if (a.ok) this.d.logger.error({ message: id }, `message ${id} ${kind} halted: ${e.message}`);
      if (a.ok || a.err === "already_paused") return "halted";
      return null;
    }
  }

  /**
   * The standard correction after a purge: one SMTP transaction per variant (removed from the
   * mailbox, or maybe still there), each variant built once (MimeCache), settled together.
   */
  private async deliverVariants(id: string, to: string[], indexes: number[], variants: string, lastAttempt: boolean): Promise<FanoutOutcome[]> {
    const outcomes: FanoutOutcome[] = [];
    for (const [letter, removal] of [["r", "removed"], ["k", "kept"]] as const) {
      const picked = to.flatMap((_, j) => (variants[j] === letter ? [j] : []));
      if (picked.length === 0) continue;
      const mail = await this.d.mime.get(id, "correction", removal);
      outcomes.push(...(await this.deliverInside("correction", mail, picked.map((j) => to[j]!), picked.map((j) => indexes[j]!), lastAttempt)));
    }
    return outcomes;
  }

  /**
   * A staged send's early waves (seed cohort, canary): their own mail (the report footer, replies to
   * Airlock), and with a return path domain each recipient in a transaction of its own whose return
   * path names it (VERP), so that a bounce says exactly who bounced. The envelope is not part of the
   * digest; the mail is the one approved (MimeCache checks the staged digest).
   */
  private async deliverEarly(id: string, mail: BuiltMail, to: string[], indexes: number[], lastAttempt: boolean): Promise<FanoutOutcome[]> {
    const verp = this.d.verp;
    if (!verp) return this.deliverInside("original", mail, to, indexes, lastAttempt);
    const outcomes: FanoutOutcome[] = [];
    for (let j = 0; j < to.length; j++) {
      const own = { ...mail, envelopeFrom: verp.bounceAddress(id, indexes[j]!) };
      outcomes.push(...(await this.deliverInside("original", own, [to[j]!], [indexes[j]!], lastAttempt)));
    }
    return outcomes;
  }

  private async settle(id: string, kind: "original" | "correction", outcomes: FanoutOutcome[]): Promise<void> {
    const settled = await this.d.store.settle(id, kind, outcomes);
    await this.d.followUps.carryOut(id, settled.followUps);
  }

  /**
   * Promise 8's last line: an address outside ALLOWED_RECIPIENT_DOMAINS is never handed to SMTP,
   * whatever let it into the frozen set (the upload and the submit refuse them; a list replaced by
   * a process configured without the setting could not be). It is recorded failed, with the reason.
   */
  private async deliverInside(kind: "original" | "correction", mail: BuiltMail, to: string[], indexes: number[], lastAttempt: boolean): Promise<FanoutOutcome[]> {
    const allowed = this.d.config.ALLOWED_RECIPIENT_DOMAINS;
    if (!allowed) return this.deliver(kind, mail.envelopeFrom, to, indexes, mail.raw, lastAttempt);
    const inside: number[] = [];
    const refused: FanoutOutcome[] = [];
    to.forEach((address, j) => {
      if (isAllowedDomain(address, allowed)) inside.push(j);
      else refused.push({ index: indexes[j]!, address, outcome: "f", reply: "not sent: outside ALLOWED_RECIPIENT_DOMAINS" });
    });
    if (refused.length > 0) this.d.logger.error({ refused: refused.length }, `${kind}: ${refused.length} recipient(s) outside ALLOWED_RECIPIENT_DOMAINS in a frozen set: not sent`);
    if (inside.length === 0) return refused;
    const sent = await this.deliver(kind, mail.envelopeFrom, inside.map((j) => to[j]!), inside.map((j) => indexes[j]!), mail.raw, lastAttempt);
    return [...sent, ...refused];
  }

  /** `indexes[j]` is `to[j]`'s index in the frozen set: the outcomes carry it to the settle. */
  private async deliver(kind: string, from: string, to: string[], indexes: number[], raw: Buffer, lastAttempt: boolean): Promise<FanoutOutcome[]> {
    const timer = this.d.metrics?.smtpTransaction.startTimer({ kind });
    try {
      const result = await this.d.transport.send({ from, to }, raw);
      timer?.({ result: "ok" });
      const rejected = new Map(result.rejected.map((r) => [r.address.toLowerCase(), r]));
      return to.map((address, j) => fanoutOutcome(indexes[j]!, address, recipientOutcome(rejected.get(address), lastAttempt)));
    } catch (e) {
      timer?.({ result: e instanceof SmtpSendError ? e.kind : "error" });
      if (!(e instanceof SmtpSendError)) throw e;
      const outcome = transactionOutcome(e, lastAttempt);
      return to.map((address, j) => fanoutOutcome(indexes[j]!, address, outcome));
    }

    /** The settle's letters: s(ent), f(ailed), t(emporary: retry), a(mbiguous: retry, possibly delivered). */
    function fanoutOutcome(index: number, address: string, o: SmtpOutcome): FanoutOutcome {
      if (o.type === "sent") return { index, address, outcome: "s", reply: "" };
      if (o.type === "failed") return { index, address, outcome: "f", reply: o.reply };
      return { index, address, outcome: o.ambiguous ? "a" : "t", reply: o.reply };
    }
  }
}
