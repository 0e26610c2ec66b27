/**
 * What people do to messages: submit, edit, approve, reject, withdraw, recall, and what they may
 * read. Role rules live here (the domain), not in the HTTP layer. Every state change goes through
 * the store's compare-and-set scripts; this class translates their answers into DomainErrors and
 * schedules what follows (release, expiry, correction fan-out).
 */
import type { Config } from "../config.js";
import type { User } from "../auth/users.js";
import { DomainError } from "../domain/errors.js";
import type { Message } from "../domain/message.js";
import type { MessageInput } from "../domain/message-input.js";
import { effectiveHoldSeconds, extractAddress, senderAllowed } from "../domain/policies.js";
import { audienceToHeader, newMessageId } from "../mail/mime.js";
import type { Scheduler } from "../queues/scheduler.js";
import type { Logger } from "pino";
import type { Metrics } from "../metrics/metrics.js";
import type { Clock, MessageStore, ScriptAnswer } from "../store/message-store.js";

export interface MessageServiceDeps {
  store: MessageStore;
  scheduler: Scheduler;
  clock: Clock;
  config: Pick<Config, "MAIL_FROM" | "HOLD_MIN_SECONDS" | "APPROVAL_TTL_HOURS" | "APPROVALS_REQUIRED" | "LARGE_AUDIENCE_THRESHOLD" | "LARGE_AUDIENCE_APPROVALS">;
  /** One structured line per committed action (message id, revision, actor, new state); the audit trail stays the record. */
  logger?: Pick<Logger, "info">;
  /** recall-to-stop is observed here when the recall itself stopped everything (nothing was in flight). */
  metrics?: Pick<Metrics, "recallToStop">;
}

const has = (u: User, ...roles: User["roles"]) => roles.some((r) => u.roles.includes(r));

export class MessageService {
  constructor(private readonly d: MessageServiceDeps) {}

  private get policy() {
    const c = this.d.config;
    return { approvalsRequired: c.APPROVALS_REQUIRED, largeAudienceThreshold: c.LARGE_AUDIENCE_THRESHOLD, largeAudienceApprovals: c.LARGE_AUDIENCE_APPROVALS };
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
    if (current.author !== user.email) throw new DomainError("forbidden", "only the message's author may edit it");
    await this.submit("edit", id, user, input, current.messageId);
    return (await this.d.store.get(id))!;
  }

  private async submit(mode: "create" | "edit", id: string, user: User, input: MessageInput, messageId?: string): Promise<void> {
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
        author: user.email,
        holdSeconds: effectiveHoldSeconds(input.holdMinutes, this.d.config.HOLD_MIN_SECONDS),
        sendAt,
        expiresAt,
        // One Message-ID per message: a new revision is the same message, not sent yet.
        messageId: messageId ?? newMessageId(this.mailDomain(), id),
      },
      this.policy,
      now,
    );
    const ok = this.committed(mode === "create" ? "submit" : "edit", user, id, answer);
    await this.d.scheduler.scheduleExpiry(id, Number(ok.revision), expiresAt);
  }

  async approve(user: User, id: string, opts: { comment?: string; revision?: number }): Promise<Message> {
    if (!has(user, "approver")) throw new DomainError("forbidden", "only an approver may approve");
    const current = await this.get(user, id);
    if (current.author === user.email) throw new DomainError("self_approval", "nobody approves their own message");
    const revision = opts.revision ?? current.revision;
    const ok = this.committed("approve", user, id, await this.d.store.approve(id, user.email, revision, opts.comment ?? ""), revision);
    if (ok.state === "scheduled") await this.d.scheduler.scheduleRelease(id, revision, Number(ok.releaseAt));
    return (await this.d.store.get(id))!;
  }

  async reject(user: User, id: string, opts: { reason: string; revision?: number }): Promise<Message> {
    if (!has(user, "approver")) throw new DomainError("forbidden", "only an approver may reject");
    const current = await this.get(user, id);
    if (current.author === user.email) throw new DomainError("self_approval", "nobody decides on their own message");
    this.committed("reject", user, id, await this.d.store.move("reject", id, user.email, { revision: opts.revision ?? current.revision, detail: { reason: opts.reason } }), opts.revision ?? current.revision);
    return (await this.d.store.get(id))!;
  }

  async withdraw(user: User, id: string): Promise<Message> {
    const current = await this.get(user, id);
    if (current.author !== user.email) throw new DomainError("forbidden", "only the message's author may withdraw it");
    this.committed("withdraw", user, id, await this.d.store.move("withdraw", id, user.email), current.revision);
    return (await this.d.store.get(id))!;
  }

  /** Answers only after the recall is committed in Redis: from then on no recipient is handed the original. */
  async recall(user: User, id: string, opts: { reason: string; correctionText?: string }): Promise<Message & { delivered: number }> {
    const current = await this.get(user, id);
    if (!this.mayRecall(user, current)) throw new DomainError("forbidden", "authors may recall only their own messages");
    const ok = this.committed("recall", user, id, await this.d.store.recall(id, user.email, opts.reason, opts.correctionText ?? ""), current.revision);
    // Nothing of the original was inside an SMTP transaction: the recall's answer is the stop.
    // Otherwise the worker that settles the last transaction observes it (workers/fanout.ts).
    if (ok.state === "recalled" || ok.startCorrection) this.d.metrics?.recallToStop.observe(0);
    if (ok.startCorrection) await this.d.scheduler.startFanout(id, "correction", current.recipientCount);
    // The recall lifted a pause while a transaction was still in flight: the correction starts from
    // the original's batch jobs, which the pause had parked for PAUSE_RECHECK_MS. Wake them.
    else if (ok.liftedPause && ok.state === "correcting") await this.d.scheduler.wakeFanout(id, "original", current.recipientCount);
    const m = (await this.d.store.get(id))!;
    return { ...m, delivered: Number(ok.delivered) };
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
   * look again within PAUSE_RECHECK_MS; they are woken now.
   */
  async resume(user: User, id: string): Promise<Message> {
    if (!this.mayPause(user)) throw new DomainError("forbidden", "only ops and admins may resume a fan-out");
    const current = await this.get(user, id);
    const ok = this.committed("resume", user, id, await this.d.store.pauseOrResume("resume", id, user.email), current.revision);
    await this.d.scheduler.wakeFanout(id, ok.state === "sending" ? "original" : "correction", Number(ok.recipientCount));
    return (await this.d.store.get(id))!;
  }

  mayPause(user: User): boolean {
    return has(user, "ops", "admin");
  }

  mayRecall(user: User, m: Message): boolean {
    return has(user, "approver", "ops", "admin") || (has(user, "author") && m.author === user.email);
  }

  /** check() and, when it passed, the log line of the action. */
  private committed(action: string, user: User, id: string, a: ScriptAnswer, knownRevision?: number): Extract<ScriptAnswer, { ok: true }> {
    const ok = this.check(a, id);
    const revision = ok.revision === undefined ? knownRevision : Number(ok.revision);
    this.d.logger?.info({ message: id, revision, actor: user.email, action, state: ok.state }, `message ${id}: ${action} by ${user.email}${ok.state ? ` -> ${String(ok.state)}` : ""}`);
    return ok;
  }

  /** Turns a script's refusal into the DomainError the caller sees. */
  private check(a: ScriptAnswer, id: string): Extract<ScriptAnswer, { ok: true }> {
    if (a.ok) return a;
    switch (a.err) {
      case "not_found":
        throw new DomainError("not_found", `message ${id} does not exist`);
      case "conflict":
        throw new DomainError("conflict", `message ${id} is ${a.state}: the action is not allowed in that state`, { state: a.state });
      case "stale_revision":
        throw new DomainError("stale_revision", `message ${id} has a newer revision`, { state: a.state });
      case "self_approval":
        throw new DomainError("self_approval", "nobody approves their own message");
      case "already_approved":
        throw new DomainError("already_approved", "you already approved this revision");
      case "not_author":
        throw new DomainError("forbidden", "only the message's author may do that");
      case "unknown_audience":
        throw new DomainError("invalid_input", `audience ${String(a.audience)} does not exist`, [{ path: ["audience", "lists"], message: `unknown audience ${String(a.audience)}` }]);
      case "no_recipients":
        throw new DomainError("invalid_input", "the message has no recipients", [{ path: ["audience"], message: "no recipients" }]);
      case "already_paused":
        throw new DomainError("conflict", `message ${id}'s fan-out is already paused`, { state: a.state });
      case "not_paused":
        throw new DomainError("conflict", `message ${id}'s fan-out is not paused`, { state: a.state });
      case "too_many_recipients":
        throw new DomainError("too_large", `the message has ${String(a.count)} recipients, more than allowed`);
      default:
        throw new DomainError("conflict", `message ${id}: ${a.err}`);
    }
  }
}
