/**
 * What the inbound listener hears, recorded as signals of a staged send (issue 16).
 *
 * - A bounce counts only when the recipient's mail failed for good (DSN action "failed" with a
 *   5.x.x status). A "delayed" DSN, or a "failed" one with a 4.x.x status (given up after retries),
 *   is logged and not counted: the threshold is about addresses that do not exist.
 *   Dedupe `bounce:<index>`: one recipient bounces once, however many DSNs say so.
 * - A reply is recorded as "reply" when a person wrote it and as "autoReply" when a machine did
 *   (kept as evidence; the store never halts on those). Dedupe by the reply's Message-ID, else by a
 *   hash of its sender and excerpt, so a re-delivered reply counts once.
 *
 * A message the store does not know, or that was never sent, is logged and the mail still
 * accepted: the listener cannot know it at RCPT time (the VERP tag only proves Airlock issued the
 * address), and refusing after DATA would make the remote MTA bounce a bounce. A sink that throws
 * (Redis unreachable) is left to the listener, which answers 451 so that the mail comes again;
 * the dedupe keys make that harmless.
 */
import { createHash } from "node:crypto";
import type { SignalAnswer, SignalEvidence, SignalKind, SignalSink } from "../waves/signals.js";
import { oneLine, someLines } from "./bounded-text.js";
import type { BounceEvent, InboundHandler, InboundLogger, ReplyEvent } from "./listener.js";

/** Longest kept value per evidence field (UTF-16 units): the evidence goes to Redis, the dashboard and halt mails. */
export const EVIDENCE_LIMITS = { from: 254, excerpt: 500, status: 32, diagnostic: 300 } as const;

export function inboundSignals(sink: SignalSink, logger: InboundLogger): InboundHandler {
  const record = async (id: string, kind: Exclude<SignalKind, "failure">, evidence: Omit<SignalEvidence, "kind" | "at">, dedupe: string, what: string) => {
    const answer = await sink.record(id, kind, evidence, dedupe);
    logAnswer(logger, id, kind, what, answer);
  };

  return {
    async onBounce(e: BounceEvent) {
      const what = `recipient ${e.index} ${e.outcome} ${e.status || "(no status)"}`;
      if (!countsAsBounce(e)) {
        logger.info(`message ${e.messageId} bounce not counted: ${what} is not a permanent failure`);
        return;
      }
      await record(e.messageId, "bounce", bounceEvidence(e), bounceDedupe(e.index), what);
    },

    async onReply(e: ReplyEvent) {
      const kind = e.automatic ? "autoReply" : "reply";
      const evidence = replyEvidence(e);
      const what = e.automatic ? `automatic reply (${oneLine(e.reasons[0] ?? "no reason given", 80)})` : "human reply";
      await record(e.messageId, kind, evidence, replyDedupe(e, evidence), what);
    },
  };
}

/** Only a mail that failed for good: not a delay, not a give-up after temporary failures. */
export function countsAsBounce(e: Pick<BounceEvent, "outcome" | "permanent">): boolean {
  return e.outcome === "failed" && e.permanent;
}

export function bounceDedupe(index: number): string {
  return `bounce:${index}`;
}

export function bounceEvidence(e: BounceEvent): Omit<SignalEvidence, "kind" | "at"> {
  const ev: Omit<SignalEvidence, "kind" | "at"> = { index: e.index };
  const from = e.finalRecipient ? oneLine(e.finalRecipient, EVIDENCE_LIMITS.from) : "";
  if (from) ev.from = from;
  const status = oneLine(e.status, EVIDENCE_LIMITS.status);
  if (status) ev.status = status;
  const diagnostic = e.diagnostic ? oneLine(e.diagnostic, EVIDENCE_LIMITS.diagnostic) : "";
  if (diagnostic) ev.diagnostic = diagnostic;
  return ev;
}

export function replyEvidence(e: Pick<ReplyEvent, "from" | "excerpt">): Omit<SignalEvidence, "kind" | "at"> {
  const ev: Omit<SignalEvidence, "kind" | "at"> = {};
  const from = oneLine(e.from, EVIDENCE_LIMITS.from);
  if (from) ev.from = from; // "" for the null sender
  const excerpt = someLines(e.excerpt, EVIDENCE_LIMITS.excerpt).trim();
  if (excerpt) ev.excerpt = excerpt;
  return ev;
}

/**
 * `reply:m:<hash of the Message-ID>` when the reply has one, else `reply:h:<hash of sender and
 * excerpt>`. Hashed so the key is short and of known characters whatever the mail carried; the
 * kind is not in the key (the same mail is always classified the same way).
 */
export function replyDedupe(e: Pick<ReplyEvent, "mailMessageId">, evidence: Pick<SignalEvidence, "from" | "excerpt">): string {
  const mid = e.mailMessageId?.trim().replace(/^<|>$/g, "").trim();
  if (mid) return `reply:m:${digest(mid)}`;
  return `reply:h:${digest(`${(evidence.from ?? "").toLowerCase()}\n${evidence.excerpt ?? ""}`)}`;
}

function digest(s: string): string {
  return createHash("sha256").update(s).digest("hex").slice(0, 32);
}

function logAnswer(logger: InboundLogger, id: string, kind: string, what: string, a: SignalAnswer): void {
  if (!a.ok) {
    const why = a.err === "not_found" ? "there is no such message" : "the message was never sent";
    logger.warn(`message ${id} ${kind} not recorded (${what}): ${why}; mail accepted and dropped`);
  } else if (a.halted) {
    logger.warn(`message ${id} halted by a ${kind} signal (${what})`);
  } else {
    logger.info(`message ${id} ${kind} ${a.counted ? "recorded" : "already recorded, counted once"} (${what})`);
  }
}
