/**
 * What people do to messages: submit, edit, approve, reject, withdraw, recall, and what they may
 * read. Role rules live here (the domain), not in the HTTP layer. Every state change goes through
 * the store's compare-and-set scripts; this class translates their answers into DomainErrors and
 * hands what follows (the follow-ups each answer names) to FollowUps.
 */
import type { Config } from "../config.js";
import type { User } from "../auth/users.js";
import type { Clock } from "../domain/clock.js";
import { DomainError } from "../domain/errors.js";
import type { Message } from "../domain/message.js";
import type { MessageInput } from "../domain/message-input.js";
import { approvalLadder, approvalOutcome, approvalRefusal, effectiveHoldSeconds, extractAddress, sameIdentity, senderAllowed } from "../domain/policies.js";
import { audienceToHeader, newMessageId } from "../mail/mime.js";
import type { Logger } from "pino";
import type { Metrics } from "../metrics/metrics.js";
import type { MessageStore } from "../store/message-store.js";
import type { Refusal } from "../store/script-answers.js";
import type { FollowUps } from "./follow-ups.js";

export interface MessageServiceDeps {
  store: MessageStore;
  followUps: FollowUps;
  clock: Clock;
  config: Pick<Config, "MAIL_FROM" | "HOLD_MIN_SECONDS" | "APPROVAL_TTL_HOURS" | "APPROVALS_REQUIRED" | "LARGE_AUDIENCE_THRESHOLD" | "LARGE_AUDIENCE_APPROVALS">;
  /** One structured line per committed action (message id, revision, actor, new state); the audit trail stays the record. */
  logger?: Pick<Logger, "info">;
  /** recall-to-stop is observed here when the recall itself stopped everything (nothing was in flight). */
  metrics?: Pick<Metrics, "recallToStop">;
}

const has = (u: User, ...roles: User["roles"]) => roles.some((r) => u.roles.includes(r));

/** An approval decided on a read that another approval overtook is decided again, this many times at most. */
const APPROVE_ATTEMPTS = 5;

type Ok<A> = Extract<A, { ok: true }>;

export class MessageService {
  constructor(private readonly d: MessageServiceDeps) {}

  private get ladder() {
    const c = this.d.config;
    return approvalLadder({ approvalsRequired: c.APPROVALS_REQUIRED, largeAudienceThreshold: c.LARGE_AUDIENCE_THRESHOLD, largeAudienceApprovals: c.LARGE_AUDIENCE_APPROVALS });
  }

  private mailDomain(): string {
    return extractAddress(this.d.config.MAIL_FROM).split("@")[1] ?? "localhost";
  }

  async get(user: User, id: string): Promise<Message> {
    void user; // every role may read every message (spec, HTTP API)
    const m = await this.d.store.get(id);
    if (!m) throw new DomainError("not_found", `message ${id} does not exist`);
    return m;
  }

  async create(user: User, input: MessageInput): Promise<Message> {
    if (!has(user, "author", "admin")) throw new DomainError("forbidden", "only an author may submit a message");
    const id = await this.d.store.nextId();
    await this.submit("create", id, user, input);
    return (await this.d.store.get(id))!;
  }

  async edit(user: User, id: string, input: MessageInput): Promise<Message> {
    const current = await this.get(user, id);
    if (!sameIdentity(current.author, user.email)) throw new DomainError("forbidden", "only the message's author may edit it");
    await this.submit("edit", id, user, input, current);
    return (await this.d.store.get(id))!;
  }

  private async submit(mode: "create" | "edit", id: string, user: User, input: MessageInput, current?: Message): Promise<void> {
    const from = input.from ?? this.d.config.MAIL_FROM;
    if (!senderAllowed(from, this.d.config.MAIL_FROM, user.senders)) {
      throw new DomainError("forbidden", `you may not send as ${extractAddress(from)}`, [{ path: ["from"], message: "not one of your senders" }]);
    }
    const sendAt = input.sendAt ? Date.parse(input.sendAt) : null;
    const now = this.d.clock.now();
    const expiresAt = now + this.d.config.APPROVAL_TTL_HOURS * 3600_000;
    const lists = [...new Set(input.audience.lists ?? [])];
    const addresses = [...new Set(input.audience.addresses ?? [])];
    const answer = await this.d.store.submit(
      mode,
      id,
      user.email,
      {
        subject: input.subject,
        text: input.text,
        html: input.html ?? null,
        from,
        audience: { lists, addresses },
        toHeader: audienceToHeader(lists, addresses.length, this.mailDomain()),
        author: current?.author ?? user.email,
        holdSeconds: effectiveHoldSeconds(input.holdMinutes, this.d.config.HOLD_MIN_SECONDS),
        sendAt,
        expiresAt,
        // One Message-ID per message: a new revision is the same message, not sent yet.
        messageId: current?.messageId ?? newMessageId(this.mailDomain(), id),
      },
      this.ladder,
      now,
      current?.revision,
    );
    const ok = this.committed(mode === "create" ? "submit" : "edit", user, id, answer);
    await this.d.followUps.carryOut(id, ok.followUps);
  }

  /**
   * Four eyes, decided here from the message as read (domain/policies.ts); the script commits the
   * decision only if no other approval or edit came in between, else it is decided again.
   */
  async approve(user: User, id: string, opts: { comment?: string; revision?: number }): Promise<Message> {
    if (!has(user, "approver")) throw new DomainError("forbidden", "only an approver may approve");
    for (let attempt = 1; ; attempt++) {
      const current = await this.get(user, id);
      const refusal = approvalRefusal(current.author, user.email, current.approvals);
      if (refusal === "self_approval") throw new DomainError("self_approval", "nobody approves their own message");
      if (refusal === "already_approved") throw new DomainError("already_approved", "you already approved this revision");
      const now = this.d.clock.now();
      const { to, releaseAt } = approvalOutcome(
        { approvalsGiven: current.approvals.length, requiredApprovals: current.requiredApprovals, holdSeconds: current.holdSeconds, sendAtMs: current.sendAt ? Date.parse(current.sendAt) : null },
        now,
      );
      const revision = opts.revision ?? current.revision;
      const answer = await this.d.store.approve(id, user.email, { revision, seenApprovals: current.approvals.length, to, releaseAt, comment: opts.comment ?? "" }, now);
      if (!answer.ok && answer.err === "stale_read" && attempt < APPROVE_ATTEMPTS) continue;
      const ok = this.committed("approve", user, id, answer, revision);
      await this.d.followUps.carryOut(id, ok.followUps);
      return (await this.d.store.get(id))!;
    }
  }

  async reject(user: User, id: string, opts: { reason: string; revision?: number }): Promise<Message> {
    if (!has(user, "approver")) throw new DomainError("forbidden", "only an approver may reject");
    const current = await this.get(user, id);
    if (sameIdentity(current.author, user.email)) throw new DomainError("self_approval", "nobody decides on their own message");
    const revision = opts.revision ?? current.revision;
    this.committed("reject", user, id, await this.d.store.move("reject", id, user.email, { revision, detail: { reason: opts.reason } }), revision);
    return (await this.d.store.get(id))!;
  }

  async withdraw(user: User, id: string): Promise<Message> {
    const current = await this.get(user, id);
    if (!sameIdentity(current.author, user.email)) throw new DomainError("forbidden", "only the message's author may withdraw it");
    this.committed("withdraw", user, id, await this.d.store.move("withdraw", id, user.email), current.revision);
    return (await this.d.store.get(id))!;
  }

  /** Answers only after the recall is committed in Redis: from then on no recipient is handed the original. */
  async recall(user: User, id: string, opts: { reason: string; correctionText?: string }): Promise<Message & { delivered: number }> {
    const current = await this.get(user, id);
    if (!this.mayRecall(user, current)) throw new DomainError("forbidden", "authors may recall only their own messages");
    const ok = this.committed("recall", user, id, await this.d.store.recall(id, user.email, opts.reason, opts.correctionText ?? ""), current.revision);
    // Nothing of the original was inside an SMTP transaction and there is nobody to correct: the
    // recall's answer is the stop. (A correction that starts now is observed by the follow-up.)
    if (ok.state === "recalled" || ok.state === "corrected") this.d.metrics?.recallToStop.observe(0);
    await this.d.followUps.carryOut(id, ok.followUps);
    const m = (await this.d.store.get(id))!;
    return { ...m, delivered: ok.delivered };
  }

  /**
   * Holds a running fan-out (ops, admin): no further recipient is claimed once this answers;
   * transactions already under way finish. The message stays `sending` (or `correcting`), and a
   * recall still works while it is held.
   */
  async pause(user: User, id: string, opts: { reason: string }): Promise<Message> {
    if (!this.mayPause(user)) throw new DomainError("forbidden", "only ops and admins may pause a fan-out");
    const current = await this.get(user, id);
    this.committed("pause", user, id, await this.d.store.pauseOrResume("pause", id, user.email, opts.reason), current.revision);
    return (await this.d.store.get(id))!;
  }

  /**
   * Lets a held fan-out go on. Its batch jobs wait out the pause in BullMQ's delayed set and would
   * look again within PAUSE_RECHECK_MS; the follow-up wakes them now.
   */
  async resume(user: User, id: string): Promise<Message> {
    if (!this.mayPause(user)) throw new DomainError("forbidden", "only ops and admins may resume a fan-out");
    const current = await this.get(user, id);
    const ok = this.committed("resume", user, id, await this.d.store.pauseOrResume("resume", id, user.email), current.revision);
    await this.d.followUps.carryOut(id, ok.followUps);
    return (await this.d.store.get(id))!;
  }

  mayPause(user: User): boolean {
    return has(user, "ops", "admin");
  }

  mayRecall(user: User, m: Message): boolean {
    return has(user, "approver", "ops", "admin") || (has(user, "author") && sameIdentity(m.author, user.email));
  }

  /** check() and, when it passed, the log line of the action. */
  private committed<A extends { ok: true; state: string; revision?: number } | Refusal>(action: string, user: User, id: string, a: A, knownRevision?: number): Ok<A> {
    const ok = this.check(a, id);
    const revision = ok.revision ?? knownRevision;
    this.d.logger?.info({ message: id, revision, actor: user.email, action, state: ok.state }, `message ${id}: ${action} by ${user.email} -> ${ok.state}`);
    return ok;
  }

  /** Turns a script's refusal into the DomainError the caller sees. */
  private check<A extends { ok: true } | Refusal>(a: A, id: string): Ok<A> {
    if (a.ok) return a as Ok<A>;
    const r = a as Refusal;
    switch (r.err) {
      case "not_found":
        throw new DomainError("not_found", `message ${id} does not exist`);
      case "conflict":
        throw new DomainError("conflict", `message ${id} is ${r.state}: the action is not allowed in that state`, { state: r.state });
      case "stale_revision":
        throw new DomainError("stale_revision", `message ${id} has a newer revision (${r.revision ?? "?"})`, { state: r.state, revision: r.revision });
      case "stale_read":
        throw new DomainError("conflict", `message ${id} kept changing while this was decided: try again`, { state: r.state });
      case "unknown_audience":
        throw new DomainError("invalid_input", `audience ${String(r.audience)} does not exist`, [{ path: ["audience", "lists"], message: `unknown audience ${String(r.audience)}` }]);
      case "no_recipients":
        throw new DomainError("invalid_input", "the message has no recipients", [{ path: ["audience"], message: "no recipients" }]);
      case "already_paused":
        throw new DomainError("conflict", `message ${id}'s fan-out is already paused`, { state: r.state });
      case "not_paused":
        throw new DomainError("conflict", `message ${id}'s fan-out is not paused`, { state: r.state });
      case "too_many_recipients":
        throw new DomainError("too_large", `the message has ${String(r.count)} recipients, more than allowed`);
      case "not_due":
      case "already":
        throw new DomainError("conflict", `message ${id}: ${r.err}`, { state: r.state });
    }
  }
}
