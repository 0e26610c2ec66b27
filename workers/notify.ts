/**
 * Sends one notification: re-checks that it still makes sense (an approval request for a revision
 * that was edited meanwhile is dropped), issues its link tokens, renders it from templates/notify/,
 * hands it to the same transport as the fan-out, and records it in the message's audit trail.
 * A failure here never touches the message's state: it is retried, then recorded as failed.
 */
import type { Logger } from "pino";
import type { UserDirectory } from "../src/auth/users.js";
import { AIRLOCK_ACTOR, type Message, type WavePhase } from "../src/domain/message.js";
import { releaseAt } from "../src/domain/policies.js";
import { addressOf } from "../src/domain/sender.js";
import { domainOf } from "../src/domain/recipient-domains.js";
import type { LinkTokens } from "../src/links/link-tokens.js";
import { buildMime, newMessageId } from "../src/mail/mime.js";
import { oneLine, type NotificationRenderer } from "../src/mail/notifications.js";
import type { Renderer } from "../src/mail/render.js";
import { correctionAsSent, originalAsSent } from "../src/notify/as-sent.js";
import { recipientOutcome, transactionOutcome } from "../src/mail/smtp-outcome.js";
import { SmtpSendError, type MailTransport } from "../src/mail/transport.js";
import { diffRevisions, type RevisionSnapshot } from "../src/notify/diff.js";
import { formatDateTime, formatDuration, formatTime } from "../src/notify/format.js";
import type { HaltingSignal, HaltSignals, LinkAction, NotificationDataByKind, NotificationKind } from "../src/notify/notification-data.js";
import { messageSummary, reviewUrl } from "../src/notify/summary.js";
import type { JobData } from "../src/queues/catalogue.js";
import type { Clock } from "../src/domain/clock.js";
import type { MessageStore } from "../src/store/message-store.js";
import type { SignalEvidence, SignalKind } from "../src/waves/signals.js";

export interface NotifyDeps {
  store: MessageStore;
  users: UserDirectory;
  tokens: LinkTokens;
  renderer: NotificationRenderer;
  /** Builds the message and its correction exactly as the fan-out does, to show both parts and the digest. */
  mail: Renderer;
  transport: MailTransport;
  clock: Clock;
  config: { MAIL_FROM: string; PUBLIC_URL: string };
  logger: Logger;
}

/** A recall link also stops working when the message reaches a terminal state; this caps it regardless. */
const RECALL_LINK_MAX_MS = 30 * 24 * 3600_000;

export class NotifyProcessor {
  constructor(private readonly d: NotifyDeps) {}

  async process(job: JobData<"notify">, lastAttempt: boolean): Promise<void> {
    const m = await this.d.store.get(job.id);
    if (!m) return;
    const skip = this.irrelevant(job, m);
    if (skip) {
      this.d.logger.info({ message: m.id, revision: m.revision }, `notification ${job.kind} to ${job.to} not sent: ${skip}`);
      return;
    }
    const person = this.d.users.byAddress(job.to);
    const { data, links } = await this.data(job.kind, m, job.to, person?.name ?? job.to);
    const rendered = this.d.renderer.render(job.kind, data as never);
    const domain = domainOf(addressOf(this.d.config.MAIL_FROM));
    const raw = await buildMime({
      from: this.d.config.MAIL_FROM,
      toHeader: displayAddress(person?.name ?? "", job.to),
      subject: rendered.subject,
      html: rendered.html,
      text: rendered.text,
      messageId: newMessageId(domain, `notify-${m.id}`),
      // Every notification about one message shares a thread root, so mail clients group them.
      references: `<airlock.notify.${m.id}@${domain}>`,
      date: new Date(this.d.clock.now()),
    });

    const detail = { kind: job.kind, to: job.to, links };
    let refusal: string | null = null;
    // Retries (a throw) follow the backoff in smtp-outcome.ts: NOTIFY_ATTEMPTS, NOTIFY_BACKOFF.
    try {
      const r = await this.d.transport.send({ from: addressOf(this.d.config.MAIL_FROM), to: [job.to] }, raw);
      const outcome = recipientOutcome(r.rejected[0], lastAttempt);
      if (outcome.type === "retry") throw new Error(`notification to ${job.to} deferred: ${outcome.reply}`);
      if (outcome.type === "failed") refusal = outcome.reply;
    } catch (e) {
      if (e instanceof SmtpSendError) {
        const outcome = transactionOutcome(e, lastAttempt);
        if (outcome.type === "retry") throw e;
        refusal = outcome.reply;
      } else if (lastAttempt) {
        // Not an SMTP answer (the transport promises to throw SmtpSendError only): recorded all the same.
        refusal = (e as Error).message.slice(0, 500);
      } else {
        throw e;
      }
    }
    if (refusal !== null) {
      this.d.logger.warn({ message: m.id, revision: m.revision }, `notification ${job.kind} to ${job.to} failed: ${refusal}`);
      await this.d.store.note(m.id, "notifier", "notifyFailed", { ...detail, reply: refusal });
      return;
    }
    await this.d.store.note(m.id, "notifier", "notify", detail);
  }

  /** Why a notification no longer makes sense, or null. */
  private irrelevant(job: JobData<"notify">, m: Message): string | null {
    if (job.kind === "approval_request" || job.kind === "reminder") {
      if (m.state !== "pending_approval") return `the message is ${m.state}`;
      if (m.revision !== job.revision) return `revision ${job.revision} was replaced by revision ${m.revision}`;
      if (m.approvals.some((a) => a.by === job.to)) return "already approved";
    }
    if (job.kind === "scheduled" && m.state !== "scheduled") return `the message is ${m.state}`;
    if (job.kind === "correction_request") {
      if (m.correction?.status !== "pending") return `the correction text is ${m.correction?.status ?? "gone"}`;
      if (m.correction.approvals.some((a) => a.by === job.to)) return "already approved";
    }
    return null;
  }

  /**
   * The latest halt by Airlock: the pause while it holds, else its audit entry (a resume may have
   * come first). `signal`: the staged send's signal that halted it, null for any other halt.
   */
  private async lastHalt(m: Message): Promise<{ reason: string; at: number; of: "original" | "correction"; signal: HaltingSignal | null } | null> {
    // A fan-out that runs while the message is correcting is the correction's.
    const ofState = (state: string) => (state === "correcting" ? "correction" : "original");
    if (m.paused?.by === AIRLOCK_ACTOR) {
      const at = Date.parse(m.paused.at);
      // A signal halt writes `haltedBy` with the pause, at the same time (store/lua/fanout-prologue.lua
      // haltForSignal); `haltedBy` outlives a continue, so an older one belongs to an earlier halt.
      const by = m.waves?.haltedBy;
      return { reason: m.paused.reason, at, of: ofState(m.state), signal: by && Date.parse(by.at) === at ? by.kind : null };
    }
    const halts = (await this.d.store.events(m.id)).filter((e) => e.action === "pause" && e.actor === AIRLOCK_ACTOR);
    const last = halts.at(-1);
    if (!last) return null;
    let reason = "";
    let signal: HaltingSignal | null = null;
    try {
      const detail = JSON.parse(last.detail ?? "{}") as { reason?: unknown; signal?: unknown };
      reason = String(detail.reason ?? "");
      signal = HALTING_SIGNALS.find((k) => k === detail.signal) ?? null;
    } catch {
      // an unreadable detail: the mail still says it halted
    }
    return { reason, at: Number(last.at), of: ofState(last.from ?? ""), signal };
  }

  private async data(kind: NotificationKind, m: Message, to: string, recipientName: string): Promise<{ data: NotificationDataByKind[NotificationKind]; links: Record<string, string> }> {
    const d = this.d;
    const message = await messageSummary({ store: d.store, users: d.users, publicUrl: d.config.PUBLIC_URL }, m);
    const base = { recipientName, message };
    const now = d.clock.now();
    const links: Record<string, string> = {};
    const link = async (action: LinkAction, expiresAt: number) => {
      const token = await d.tokens.issue({ user: to, message: m.id, revision: m.revision, action, expiresAt });
      links[action] = token.split(".")[0]!; // the id only: the audit trail must not hold usable links
      return `${d.config.PUBLIC_URL}/links/${token}`;
    };
    switch (kind) {
      case "approval_request":
      case "reminder": {
        const expiresAt = m.expiresAt ? Date.parse(m.expiresAt) : now;
        const sendAt = m.sendAt ? Date.parse(m.sendAt) : null;
        let diff = null;
        if (m.revision > 1) {
          const [prev, cur] = await Promise.all([d.store.revisionSnapshot(m.id, m.revision - 1), d.store.revisionSnapshot(m.id, m.revision)]);
          if (prev && cur) diff = diffRevisions(prev as unknown as RevisionSnapshot, cur as unknown as RevisionSnapshot);
        }
        return {
          links,
          data: {
            ...base,
            reminder: kind === "reminder",
            hold: formatDuration(m.holdSeconds),
            earliestRelease: formatDateTime(releaseAt(now, m.holdSeconds, sendAt)),
            sendAt: sendAt === null ? null : formatDateTime(sendAt),
            approvalsRequired: m.requiredApprovals,
            approvalsGiven: m.approvals.length,
            approvedBy: m.approvals.map((a) => a.by),
            expiresAt: formatDateTime(expiresAt),
            diff,
            mail: await originalAsSent(d.mail, m, new Date(now)),
            approveUrl: await link("approve", expiresAt),
            rejectUrl: await link("reject", expiresAt),
            reviewUrl: reviewUrl(d.config.PUBLIC_URL, m.id),
          },
        };
      }
      case "scheduled": {
        const at = Date.parse(m.releaseAt ?? new Date(now).toISOString());
        return {
          links,
          data: {
            ...base,
            releaseTime: formatTime(at),
            releaseAt: formatDateTime(at),
            inMinutes: Math.max(0, Math.round((at - now) / 60_000)),
            approvedBy: m.approvals.map((a) => a.by),
            recallUrl: await link("recall", now + RECALL_LINK_MAX_MS),
          },
        };
      }
      case "recalled":
        return {
          links,
          data: {
            ...base,
            ...recallOf(m),
            correctionText: m.recall?.correctionText ?? null,
            delivered: m.recall?.deliveredAtRecall ?? 0,
            skipped: m.counts.skipped,
            nothingSent: (m.recall?.deliveredAtRecall ?? 0) === 0,
          },
        };
      case "corrected":
        return {
          links,
          data: {
            ...base,
            ...recallOf(m),
            delivered: m.counts.sent, // everyone who received the original, including transactions in flight at the recall
            corrected: m.counts.corrected,
            correctionFailed: m.counts.correctionFailed,
          },
        };
      case "rejected":
        return { links, data: { ...base, rejectedBy: m.rejection?.by ?? "", reason: m.rejection?.reason ?? "" } };
      case "expired":
        return {
          links,
          data: { ...base, expiredAt: formatDateTime(m.expiresAt ? Date.parse(m.expiresAt) : now), approvalsRequired: m.requiredApprovals, approvalsGiven: m.approvals.length },
        };
      case "correction_request": {
        // Until decided: the link service refuses once the text is no longer pending or the message is terminal.
        const expiresAt = now + RECALL_LINK_MAX_MS;
        return {
          links,
          data: {
            ...base,
            ...recallOf(m),
            delivered: m.counts.sent + m.counts.inFlight,
            approvalsRequired: m.correction?.required ?? 0,
            approvalsGiven: m.correction?.approvals.length ?? 0,
            mail: await correctionAsSent(d.mail, m, new Date(now)),
            approveUrl: await link("approveCorrection", expiresAt),
            rejectUrl: await link("rejectCorrection", expiresAt),
            reviewUrl: reviewUrl(d.config.PUBLIC_URL, m.id, "correction"),
          },
        };
      }
      case "halted": {
        const halt = await this.lastHalt(m);
        const signal = halt?.signal && halt.of === "original" && m.waves ? haltSignals(m, halt.signal, await d.store.signalEvidence(m.id)) : null;
        return {
          links,
          data: {
            ...base,
            of: halt?.of ?? "original",
            reason: halt?.reason ?? "",
            haltedAt: formatDateTime(halt?.at ?? now),
            sent: halt?.of === "correction" ? m.counts.corrected : m.counts.sent,
            signal,
          },
        };
      }
    }
  }
}

/** `"Name" <address>`, the name quoted and stripped of anything that could break the header. */
function displayAddress(name: string, address: string): string {
  const clean = name.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, " ").trim();
  return clean ? `"${clean.replace(/[\\"]/g, "\\$&")}" <${address}>` : address;
}

/** Who recalled a message and why, as the recall notifications say it. */
function recallOf(m: Message): { recalledBy: string; reason: string } {
  return { recalledBy: m.recall?.by ?? "", reason: m.recall?.reason ?? "" };
}

const HALTING_SIGNALS: readonly HaltingSignal[] = ["failure", "bounce", "reply", "report"];

/** Evidence of each kind a halt mail lists, the earliest kept first; the dashboard shows all that is kept. */
export const HALT_EVIDENCE_SHOWN = 5;

const WAVE_WORDS: Record<WavePhase, string> = {
  approval: "no wave yet",
  planning: "no wave yet (its plan is being made)",
  seed: "the seed wave",
  canary: "the canary wave",
  wait: "the wait after the canary",
  rest: "the rest, continued since the halt",
};

/**
 * What a staged send's signal halt mails (`kind`: the signal that halted it): the waves, the counts
 * against their thresholds and the evidence (newest first from the store), as of now. Null for a
 * message that is not staged.
 */
export function haltSignals(m: Pick<Message, "waves" | "counts">, kind: HaltingSignal, evidence: SignalEvidence[]): HaltSignals | null {
  const w = m.waves;
  if (!w) return null;
  const oldestFirst = [...evidence].reverse();
  const listOf = <T>(k: SignalKind, count: number, view: (e: SignalEvidence) => T) => {
    const list = oldestFirst.filter((e) => e.kind === k).slice(0, HALT_EVIDENCE_SHOWN).map(view);
    return { list, more: Math.max(0, count - list.length) };
  };
  const at = (e: SignalEvidence) => formatDateTime(Date.parse(e.at));
  // One-line values stay on one line, so none can forge a line (a link) in the text part.
  const line = (s: string | undefined) => oneLine(s ?? "");
  const recipient = (e: SignalEvidence) => line(e.from) || (e.index !== undefined ? `recipient #${e.index}` : "unknown recipient");
  const text = (s: string | undefined) => (s ?? "").replace(/\r\n?/g, "\n").trim();
  const { signals: c, thresholds: t } = w;
  return {
    kind,
    wave: WAVE_WORDS[w.phase],
    seed: w.seed,
    canary: w.canary,
    rest: w.rest,
    restStarted: w.phase === "rest",
    early: w.seed + w.canary, // as the halt measures it (fanout-prologue.lua earlySize)
    replies: { count: c.replies, threshold: t.replies, halted: kind === "reply" },
    reports: { count: c.reports, threshold: t.reports, halted: kind === "report" },
    bounces: { count: c.bounces, percent: t.bouncePercent, halted: kind === "bounce" },
    failures: { count: c.failures, percent: t.failurePercent, halted: kind === "failure" },
    autoReplies: c.autoReplies,
    replyEvidence: listOf("reply", c.replies, (e) => ({ at: at(e), from: line(e.from) || "(no sender)", excerpt: text(e.excerpt) })),
    reportEvidence: listOf("report", c.reports, (e) => ({ at: at(e), note: text(e.excerpt) })),
    bounceEvidence: listOf("bounce", c.bounces, (e) => ({ at: at(e), recipient: recipient(e), status: line(e.status), diagnostic: line(e.diagnostic) })),
    failureEvidence: listOf("failure", c.failures, (e) => ({ at: at(e), recipient: recipient(e), reply: line(e.status) })),
    delivered: m.counts.sent + m.counts.inFlight,
  };
}
