/**
 * What people do to messages: submit, edit, approve, reject, withdraw, recall, and what they may
 * read. Role rules live here (the domain), not in the HTTP layer. Every state change goes through
 * the store's compare-and-set scripts; this class translates their answers into DomainErrors and
 * hands what follows (the follow-ups each answer names) to FollowUps.
 */
import type { AudienceStore } from "../audiences/audience-store.js";
import type { Config } from "../config.js";
import { mayDecide, type User } from "../auth/users.js";
import type { Clock } from "../domain/clock.js";
import { DomainError, ReplicationLagError } from "../domain/errors.js";
import type { Message, ListedMessage } from "../domain/message.js";
import { messageInput, type DraftInput, type MessageInput } from "../domain/message-input.js";
import { DRAFT_STATES } from "../domain/lifecycle.js";
import { approvalLadder, approvalOutcome, approvalRefusal, effectiveHoldSeconds, requiredApprovals, sameIdentity, senderMailboxes } from "../domain/policies.js";
import { domainOf, isAllowedDomain, nameSome, OUTSIDE_LISTED, outsideDomains } from "../domain/recipient-domains.js";
import { addressOf, chooseSender, formatMailbox, type Mailbox } from "../domain/sender.js";
import { correctionAsSent } from "../notify/as-sent.js";
import { composeCorrection, composeOriginal, composeStaged, type OriginalFields } from "../mail/compose.js";
import type { SignalEvidence } from "../waves/signals.js";
import { MAX_SEED_AUDIENCE } from "../waves/settings.js";
import { audienceToHeader, newMessageId } from "../mail/mime.js";
import type { Renderer } from "../mail/render.js";
import type { Logger } from "pino";
import type { Metrics } from "../metrics/metrics.js";
import type { BulkPace } from "../store/bulk-pace.js";
import type { ContinuePhase, KeptRecipients, MessageStore, StagingChoice } from "../store/message-store.js";
import { AudienceChangedError, type Frozen } from "../store/recipient-freeze.js";
import type { Answer } from "../store/script-answers.js";
import type { FollowUp, Refusal } from "../store/script-answers.js";
import type { DirectoryAudiences } from "./directory-audiences.js";
import type { FollowUps } from "./follow-ups.js";
import { MemoryTestSendLimit, TEST_SEND_WINDOW_MS, TEST_SENDS_PER_WINDOW, type TestMail, type TestSendLimit } from "./test-sends.js";


/** Freezes of one submit: a list replaced during each of them is a conflict to retry later. */
const FREEZE_ATTEMPTS = 3;

export interface MessageServiceDeps {
  store: MessageStore;
  followUps: FollowUps;
  /** Builds the exact mail at submit: what cannot be built is refused then, and its digest is recorded. */
  renderer: Renderer;
  clock: Clock;
  config: Pick<Config, "MAIL_FROM" | "CORRECTION_APPROVALS" | "HOLD_MIN_SECONDS" | "APPROVAL_TTL_HOURS" | "APPROVALS_REQUIRED" | "LARGE_AUDIENCE_THRESHOLD" | "LARGE_AUDIENCE_APPROVALS" | "ALLOWED_RECIPIENT_DOMAINS" | "MAX_REVISIONS">;
  /**
   * Recipients by domain of the named audiences: with ALLOWED_RECIPIENT_DOMAINS set, a list reaching
   * outside them (uploaded before the setting) is refused at submit. Needed when the setting is set.
   */
  recipientDomains?: Pick<AudienceStore, "recordedDomains">;
  /**
   * When a purge connector is configured: a recall after delivery also removes the original from
   * the recipients' mailboxes, and the standard correction waits up to `correctionWaitMs` for each
   * recipient's purge to answer (it says whether the message was removed). Null: no purge.
   */
  purge?: { correctionWaitMs: number } | null;
  /** One structured line per committed action (message id, revision, actor, new state); the audit trail stays the record. */
  logger?: Pick<Logger, "info">;
  /** recall-to-stop is observed here when the recall itself stopped everything (nothing was in flight). */
  metrics?: Pick<Metrics, "recallToStop">;
  /** Mails a test send to its author (service/test-sends.ts). Without it, test sends are refused. */
  testMail?: TestMail;
  /** Test sends per author and window; default: counted in this process's memory. */
  testSendLimit?: TestSendLimit;
  /** Resolves the directory audiences a submit or edit names, just before it freezes them (service/directory-audiences.ts). */
  directoryAudiences?: Pick<DirectoryAudiences, "resolveForSubmit">;
  /**
   * Staged sends: the size from which a send is staged (WAVES_THRESHOLD, 0: only when asked); the
   * early waves' marks come with the renderer (Renderer.earlyWaveMarks). Without it nothing is
   * staged and `waves: true` is refused.
   */
  staging?: { from: number } | null;
  /**
   * This process's bulk work (uploads, freezes: store/bulk-pace.ts) gives way while a recall or an
   * ops pause (a halt) runs: they are answered before the next chunk of an upload. Default: nothing waits.
   */
  bulkPace?: Pick<BulkPace, "duringStop">;
}

/** States whose message has content to test-send: before release, and rejected (it may be edited). */
const TEST_SEND_STATES: readonly Message["state"][] = ["draft", "pending_approval", "rejected", "scheduled"];

/** Header on a test send naming the message it tests: its subject says [TEST], so its own digest differs. */
export const TEST_SEND_HEADER = "X-Airlock-Test";

/** See MessageService.composeRules. */
export interface ComposeRules {
  senders: Mailbox[];
  holdMinSeconds: number;
  approvalsFor(recipientCount: number): number;
  mailDomain: string;
}

/** See MessageService.decisionStanding. */
export type DecisionStanding = "open" | "approved" | "not_approver" | "own_message" | "own_correction" | "closed";

const has = (u: User, ...roles: User["roles"]) => roles.some((r) => u.roles.includes(r));

/** An approval decided on a read that another approval overtook is decided again, this many times at most. */
const APPROVE_ATTEMPTS = 5;

type Ok<A> = Extract<A, { ok: true }>;

export class MessageService {
  private readonly testSendLimit: TestSendLimit;

  constructor(private readonly d: MessageServiceDeps) {
    this.testSendLimit = d.testSendLimit ?? new MemoryTestSendLimit(d.clock);
  }

  private get ladder() {
    const c = this.d.config;
    return approvalLadder({ approvalsRequired: c.APPROVALS_REQUIRED, largeAudienceThreshold: c.LARGE_AUDIENCE_THRESHOLD, largeAudienceApprovals: c.LARGE_AUDIENCE_APPROVALS });
  }

  private mailDomain(): string {
    return domainOf(addressOf(this.d.config.MAIL_FROM));
  }

  /** Every role may read every message (spec, HTTP API), except a draft: its author's (and ops', admins'); a 404 to others. */
  async get(user: User, id: string): Promise<Message> {
    const m = await this.d.store.get(id);
    if (!m || !this.maySee(user, m)) throw new DomainError("not_found", `message ${id} does not exist`);
    return m;
  }

  maySee(user: User, m: ListedMessage): boolean {
    return !DRAFT_STATES.includes(m.state) || sameIdentity(m.author, user.email) || has(user, "ops", "admin");
  }

  async create(user: User, input: MessageInput | DraftInput): Promise<Message> {
    if (!has(user, "author", "admin")) throw new DomainError("forbidden", "only an author may write a message");
    const id = await this.d.store.nextId();
    if (input.draft) await this.saveDraft(id, user, input);
    else await this.submit("create", id, user, input as MessageInput);
    return (await this.d.store.get(id))!;
  }

  /** A draft is saved as it is (a new revision); a pending or rejected message becomes a new submitted revision. */
  async edit(user: User, id: string, input: MessageInput | DraftInput, opts: { revision?: number } = {}): Promise<Message> {
    const current = await this.get(user, id);
    if (!sameIdentity(current.author, user.email)) throw new DomainError("forbidden", "only the message's author may edit it");
    // The revision the editor saw (else the one just read): the script refuses a newer one, so an
    // edit never overwrites a change it did not see.
    const seen = { ...current, revision: opts.revision ?? current.revision };
    if (DRAFT_STATES.includes(current.state)) {
      await this.saveDraft(id, user, input, seen);
    } else {
      // Checked against the state acted on: the caller may have validated it as a draft that was submitted meanwhile.
      const complete = messageInput.safeParse(input);
      if (!complete.success) throw new DomainError("invalid_input", "a submitted message's edit must be complete", complete.error.issues.map((i) => ({ path: ["body", ...i.path.map(String)], message: i.message })));
      await this.submit("edit", id, user, complete.data, seen);
    }
    return (await this.d.store.get(id))!;
  }

  /** Whether `edit` of this message takes a draft (incomplete) or a complete message: for the caller's validation. */
  isDraft(m: Message): boolean {
    return DRAFT_STATES.includes(m.state);
  }

  /**
   * Submits a draft: it is checked as a complete message, built, frozen and sent for approval, at
   * the revision its author saw (`revision`; a newer one is a 409 naming the current revision).
   */
  async submitDraft(user: User, id: string, opts: { revision?: number; waves?: boolean; seedAudience?: string }): Promise<Message> {
    const current = await this.get(user, id);
    if (!sameIdentity(current.author, user.email)) throw new DomainError("forbidden", "only the draft's author may submit it");
    if (!this.isDraft(current)) throw new DomainError("conflict", `message ${id} is ${current.state}, not a draft`, { state: current.state });
    if (opts.revision !== undefined && opts.revision !== current.revision) {
      throw new DomainError("stale_revision", `draft ${id} is at revision ${current.revision}, not ${opts.revision}: it changed meanwhile`, { state: current.state, revision: current.revision });
    }
    // The staging choice is made when it is submitted (a draft does not keep one).
    const staging = { ...(opts.waves !== undefined ? { waves: opts.waves } : {}), ...(opts.seedAudience !== undefined ? { seedAudience: opts.seedAudience } : {}) };
    const parsed = messageInput.safeParse({ ...draftAsInput(current), ...staging });
    if (!parsed.success) {
      throw new DomainError("invalid_input", "the draft is not complete", parsed.error.issues.map((i) => ({ path: ["draft", ...i.path.map(String)], message: i.message })));
    }
    await this.submit("draft", id, user, parsed.data, current);
    return (await this.d.store.get(id))!;
  }

  /** Deletes a draft (its author only); its audit trail stays. */
  async discardDraft(user: User, id: string): Promise<void> {
    const current = await this.get(user, id);
    if (!sameIdentity(current.author, user.email)) throw new DomainError("forbidden", "only the draft's author may discard it");
    this.committed("discard", user, id, await this.d.store.discardDraft(id, user.email, current.revision), current.revision);
  }

  private async saveDraft(id: string, user: User, input: DraftInput, current?: Message): Promise<void> {
    this.knownTemplate(input.template);
    let from = current?.from || this.d.config.MAIL_FROM;
    if (input.from !== undefined) {
      const sender = chooseSender(input.from, senderMailboxes(this.d.config.MAIL_FROM, user.senders));
      if (!sender.ok) throw new DomainError("invalid_input", `from: ${sender.reason}`, [{ path: ["body", "from"], message: sender.reason }]);
      from = formatMailbox(sender.mailbox);
    }
    const lists = [...new Set(input.audience?.lists ?? [])];
    const addresses = [...new Set(input.audience?.addresses ?? [])];
    const answer = await this.d.store.saveDraft(
      id,
      user.email,
      {
        subject: input.subject ?? "",
        text: input.text ?? "",
        html: input.html ?? null,
        markdown: input.markdown ?? "",
        template: input.template ?? "",
        from,
        audience: { lists, addresses },
        toHeader: audienceToHeader(lists, addresses.length, this.mailDomain()),
        author: current?.author ?? user.email,
        holdSeconds: effectiveHoldSeconds(input.holdMinutes, this.d.config.HOLD_MIN_SECONDS),
        sendAt: input.sendAt ? Date.parse(input.sendAt) : null,
        messageId: current?.messageId ?? newMessageId(this.mailDomain(), id),
      },
      current?.revision,
    );
    this.committed("saveDraft", user, id, answer);
  }

  private async submit(mode: "create" | "edit" | "draft", id: string, user: User, input: MessageInput, current?: Message): Promise<void> {
    const sender = chooseSender(input.from, senderMailboxes(this.d.config.MAIL_FROM, user.senders));
    if (!sender.ok) throw new DomainError("invalid_input", `from: ${sender.reason}`, [{ path: ["body", "from"], message: sender.reason }]);
    const from = formatMailbox(sender.mailbox);
    const sendAt = input.sendAt ? Date.parse(input.sendAt) : null;
    const now = this.d.clock.now();
    const expiresAt = now + this.d.config.APPROVAL_TTL_HOURS * 3600_000;
    const lists = [...new Set(input.audience.lists ?? [])];
    const addresses = [...new Set(input.audience.addresses ?? [])];
    await this.insideAllowedDomains(input, lists);
    const mail: OriginalFields = {
      subject: input.subject,
      text: input.text ?? "",
      html: input.html ?? null,
      markdown: input.markdown ?? "",
      template: input.template ?? "",
      from,
      toHeader: audienceToHeader(lists, addresses.length, this.mailDomain()),
      // One Message-ID per message: a new revision is the same message, not sent yet.
      messageId: current?.messageId ?? newMessageId(this.mailDomain(), id),
    };
    const digest = await this.buildable(mail, now);
    await this.checkStagingInput(user, input);
    const fields = {
      ...mail,
      digest,
      seedAudience: input.seedAudience ?? "",
      audience: { lists, addresses },
      author: current?.author ?? user.email,
      holdSeconds: effectiveHoldSeconds(input.holdMinutes, this.d.config.HOLD_MIN_SECONDS),
      sendAt,
      expiresAt,
    };
    // Last before the freeze, once everything cheaper has passed: each directory audience becomes a
    // new version now (a failure changes neither the message nor the audience).
    await this.d.directoryAudiences?.resolveForSubmit(lists, user);
    // After the directory's resolution: the sizes it looks at are the ones the freeze copies.
    let waves = await this.stagingChoice(id, input, mail, now, lists, addresses);
    const keep = mode === "edit" && current !== undefined ? await this.keepsItsRecipients(current, lists, addresses) : null;
    const answer = await this.withFrozenRecipients(id, lists, addresses, keep, async (frozen) => {
      const submit = () => this.d.store.submit(mode, id, user.email, fields, this.ladder, now, { seenRevision: current?.revision, maxRevisions: this.d.config.MAX_REVISIONS, frozen, waves });
      const first = await submit();
      if (first.ok || first.err !== "staging_unbuilt") return first;
      // A list grew past the staged-send threshold after the sizes were looked at: the staged mails now.
      waves = await this.stagingChoice(id, input, mail, now, lists, addresses, { build: true });
      return submit();
    });
    const ok = this.committed(mode === "edit" ? "edit" : "submit", user, id, answer);
    await this.d.followUps.carryOut(id, ok.followUps);
  }

  /** The author's staging choices, checked before anything is written: `waves: false` is for admins, a seed audience must exist and be small. */
  private async checkStagingInput(user: User, input: MessageInput): Promise<void> {
    if (input.waves === false && !has(user, "admin")) {
      throw new DomainError("forbidden", "only admins may send a message all at once (waves: false): a large audience goes in waves");
    }
    if (!this.d.staging || !this.d.renderer.earlyWaveMarks) {
      if (input.waves === true || input.seedAudience !== undefined) {
        throw new DomainError("invalid_input", "staged sends are not configured here", [{ path: ["body", "waves"], message: "staged sends are not configured" }]);
      }
      return;
    }
    if (input.seedAudience === undefined) return;
    const [[version], size] = await Promise.all([this.d.store.freeze.versionsOf([input.seedAudience]), this.d.store.freeze.sizeAtMost([input.seedAudience], [])]);
    if (version === 0) {
      throw new DomainError("invalid_input", `seedAudience: audience ${input.seedAudience} does not exist`, [{ path: ["body", "seedAudience"], message: `unknown audience ${input.seedAudience}` }]);
    }
    if (size > MAX_SEED_AUDIENCE) {
      const message = `a seed audience goes before the canary: at most ${MAX_SEED_AUDIENCE} people (${input.seedAudience} has ${size})`;
      throw new DomainError("invalid_input", `seedAudience: ${message}`, [{ path: ["body", "seedAudience"], message }]);
    }
  }

  /**
   * The author's choice (`wanted`), the policy's threshold and, for a message that may be staged,
   * the digest of its staged mails (the submit script decides from the count, so approvers see the
   * digest of what will go out).
   */
  private async stagingChoice(
    id: string,
    input: MessageInput,
    mail: OriginalFields,
    now: number,
    lists: string[],
    addresses: string[],
    opts: { build?: boolean } = {},
  ): Promise<StagingChoice> {
    const staging = this.d.staging;
    const marks = this.d.renderer.earlyWaveMarks;
    if (!staging || !marks) return { wanted: "", from: 0, stagedDigest: "" };
    const wanted = input.waves === true ? "on" : input.waves === false ? "off" : "";
    // The staged mails are built only for a message that may be staged (two more builds of bodies up
    // to a few MB): asked for, or by the policy when its audience could reach the threshold.
    const mayBeStaged = wanted === "on" || (wanted === "" && staging.from > 0 && (opts.build || (await this.d.store.freeze.sizeAtMost(lists, addresses)) >= staging.from));
    if (!mayBeStaged) return { wanted, from: staging.from, stagedDigest: "" };
    try {
      const staged = await composeStaged(this.d.renderer, mail, new Date(now), marks(id));
      return { wanted, from: staging.from, stagedDigest: staged.digest };
    } catch (e) {
      throw new DomainError("invalid_input", `the message cannot be built as a staged send: ${(e as Error).message}`, [{ path: ["body"], message: (e as Error).message }]);
    }
  }

  /**
   * Freezes the recipients (in slices: store/recipient-freeze.ts) and submits with them. A list
   * replaced or deleted while it was copied is copied again from its new version, at most
   * FREEZE_ATTEMPTS times: a list replaced faster than it can be copied is a conflict to retry later.
   * `keep`: for an edit with the same lists, each still the version frozen before: its recipients
   * are kept (nothing copied; the explicit addresses it adds or drops are applied to them), if the
   * submit finds the lists still at those versions; if a list changed meanwhile, it is frozen after all.
   */
  private async withFrozenRecipients(
    id: string,
    lists: string[],
    addresses: string[],
    keep: KeptRecipients | null,
    submit: (frozen: Frozen | KeptRecipients) => Promise<Answer<"submit">>,
  ): Promise<Answer<"submit">> {
    const freeze = this.d.store.freeze;
    for (let attempt = 1; ; attempt++) {
      let frozen: Frozen | KeptRecipients;
      try {
        frozen = keep ?? (await freeze.freeze(id, lists, addresses));
      } catch (e) {
        if (!(e instanceof AudienceChangedError) || attempt >= FREEZE_ATTEMPTS) throw this.changedAudience(e);
        continue;
      }
      let answer: Answer<"submit">;
      try {
        answer = await submit(frozen);
      } finally {
        // Taken (renamed over the recipients) only by a successful submit.
        if (!("keep" in frozen)) await freeze.discard(frozen.scratch);
      }
      if (answer.ok || answer.err !== "audience_changed" || attempt >= FREEZE_ATTEMPTS) return answer;
      keep = null;
    }
  }

  private changedAudience(e: unknown): unknown {
    if (!(e instanceof AudienceChangedError)) return e;
    return new DomainError("conflict", `audience ${e.audience} kept changing while the message's recipients were being frozen: submit again`, { audience: e.audience });
  }

  /**
   * An edit keeps its frozen recipients when it names the same lists and addresses, and every list is
   * still the version frozen then: those versions (which submit.lua checks again), else null.
   */
  private async keepsItsRecipients(current: Message, lists: string[], addresses: string[]): Promise<KeptRecipients | null> {
    const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && new Set([...a, ...b]).size === a.length;
    if (!same(current.audience.lists, lists)) return null;
    const frozenVersion = await this.d.store.frozenVersions(current.id);
    if (!frozenVersion) return null;
    const now = await this.d.store.freeze.versionsOf(lists);
    if (!lists.every((name, i) => frozenVersion.get(name) === now[i])) return null;
    // The explicit addresses it adds and drops are applied to the kept set by the submit script.
    const before = new Set(current.audience.addresses);
    const after = new Set(addresses);
    return {
      keep: true,
      versions: lists.map((name) => frozenVersion.get(name)!),
      added: addresses.filter((a) => !before.has(a)),
      removed: current.audience.addresses.filter((a) => !after.has(a)),
    };
  }

  /**
   * ALLOWED_RECIPIENT_DOMAINS (promise 8), before anything is written: explicit addresses outside
   * them are named by path (the first OUTSIDE_LISTED, then a count); a named list is refused when its
   * recorded domains reach outside them, or when it has none recorded (uploaded before they were).
   */
  private async insideAllowedDomains(input: MessageInput, lists: string[]): Promise<void> {
    const allowed = this.d.config.ALLOWED_RECIPIENT_DOMAINS;
    if (allowed === undefined) return;
    const details: Array<{ path: Array<string | number>; message: string }> = [];
    const problems: string[] = [];
    const given = input.audience.addresses ?? [];
    const outside: string[] = [];
    let count = 0;
    given.forEach((address, i) => {
      if (isAllowedDomain(address, allowed)) return;
      count += 1;
      if (outside.length >= OUTSIDE_LISTED) return;
      outside.push(address);
      details.push({ path: ["body", "audience", "addresses", i], message: `${address} is outside the allowed recipient domains` });
    });
    if (count > outside.length) details.push({ path: ["body", "audience", "addresses"], message: `and ${count - outside.length} more outside the allowed recipient domains` });
    if (count > 0) problems.push(`${count === 1 ? "1 address is" : `${count} addresses are`} outside the allowed recipient domains: ${nameSome(outside, count)}`);

    if (lists.length > 0) {
      if (!this.d.recipientDomains) throw new Error("ALLOWED_RECIPIENT_DOMAINS is set but MessageService has no recipientDomains: named lists cannot be checked");
      for (const { name, domains } of await this.d.recipientDomains.recordedDomains(lists)) {
        const path = ["body", "audience", "lists", (input.audience.lists ?? []).indexOf(name)];
        if (domains === null) {
          const message = `audience ${name} has no record of its recipients' domains (uploaded before Airlock kept one): upload it again so its addresses are checked`;
          details.push({ path, message });
          problems.push(message);
          continue;
        }
        const out = outsideDomains(domains, allowed);
        if (out.length === 0) continue;
        const recipients = out.reduce((n, d) => n + d.count, 0);
        const message = `audience ${name} has ${recipients} recipient${recipients === 1 ? "" : "s"} outside the allowed recipient domains (${nameSome(out.map((d) => `${d.domain}: ${d.count}`), out.length)})`;
        details.push({ path, message });
        problems.push(message);
      }
    }
    if (problems.length > 0) throw new DomainError("invalid_input", `${problems.join("; ")} (allowed: ${nameSome(allowed, allowed.length)})`, details);
  }

  /**
   * Builds the message and its standard correction exactly as the fan-out will (mail/compose.ts):
   * anything that cannot go out is refused now, never found at release. Answers the digest.
   */
  private async buildable(mail: OriginalFields, now: number): Promise<string> {
    this.knownTemplate(mail.template);
    try {
      const built = await composeOriginal(this.d.renderer, mail, new Date(now));
      await composeCorrection(this.d.renderer, { original: mail, sentAt: new Date(now), correctionText: null }, new Date(now));
      return built.digest;
    } catch (e) {
      throw new DomainError("invalid_input", `the message cannot be built as a mail: ${(e as Error).message}`, [{ path: ["body"], message: (e as Error).message }]);
    }
  }

  /** A house template the renderer has (templates/messages/), or none (the default): else a 400 naming `template`. */
  private knownTemplate(template: string | undefined): void {
    if (!template) return;
    const known = this.d.renderer.templates();
    if (known.includes(template)) return;
    const message = `no house template ${template}: one of ${known.join(", ") || "(none installed)"}`;
    throw new DomainError("invalid_input", `template: ${message}`, [{ path: ["body", "template"], message }]);
  }

  /**
   * "Send me a test": the current revision, built exactly as it will go out (mail/compose.ts), with
   * its subject marked `[TEST] `, to its author's own address and nobody else. Its own Message-ID
   * (a mailbox may drop a second mail with the Message-ID it already holds, and the real one must
   * not be that one), and an `X-Airlock-Test` header naming the message, revision and the digest of
   * the mail as it will go out. Audited (`testSend`); changes no state and counts as no delivery.
   * TEST_SENDS_PER_WINDOW per author and minute, then `rate_limited`.
   */
  async testSend(user: User, id: string): Promise<{ to: string; revision: number; digest: string; subject: string }> {
    const m = await this.get(user, id);
    if (!sameIdentity(m.author, user.email)) throw new DomainError("forbidden", "only the message's author may test-send it");
    if (!TEST_SEND_STATES.includes(m.state)) throw new DomainError("conflict", `message ${id} is ${m.state}: only a message not yet released can be test-sent`, { state: m.state });
    const missing = [...(m.subject ? [] : [{ path: ["draft", "subject"], message: "required: a subject" }]), ...(m.markdown || m.text ? [] : [{ path: ["draft", "text"], message: "required: markdown, or text" }])];
    if (missing.length) throw new DomainError("invalid_input", `the draft has nothing to test yet: ${missing.map((d) => d.message).join("; ")}`, missing);
    const allowed = this.d.config.ALLOWED_RECIPIENT_DOMAINS;
    if (allowed !== undefined && !isAllowedDomain(user.email, allowed)) {
      throw new DomainError("invalid_input", `your address ${user.email} is outside the allowed recipient domains`, [{ path: ["user"], message: "outside the allowed recipient domains" }]);
    }
    if (!this.d.testMail) throw new Error("MessageService has no testMail: test sends are not wired");

    const now = new Date(this.d.clock.now());
    const digest = await this.buildable(m, now.getTime());
    const subject = `[TEST] ${m.subject}`;
    const testMessageId = newMessageId(this.mailDomain(), id).replace(/^<airlock\./, "<airlock-test.");
    const test = await composeOriginal(this.d.renderer, { ...m, subject, messageId: testMessageId }, now).catch((e: Error) => {
      throw new DomainError("invalid_input", `the test mail cannot be built: ${e.message}`, [{ path: ["body", "subject"], message: e.message }]);
    });

    const wait = await this.testSendLimit.take(user.email);
    if (wait !== null) {
      const seconds = Math.ceil(wait / 1000);
      throw new DomainError("rate_limited", `at most ${TEST_SENDS_PER_WINDOW} test sends per ${TEST_SEND_WINDOW_MS / 1000} s: try again in ${seconds} s`, { retryAfterSeconds: seconds });
    }
    const header = Buffer.from(`${TEST_SEND_HEADER}: message=${id}; revision=${m.revision}; digest=${digest}\r\n`, "latin1");
    try {
      await this.d.testMail.send(user.email, Buffer.concat([header, test.raw]), test.envelopeFrom);
    } catch (e) {
      throw new DomainError("mail_refused", `the test mail was not taken by the mail server: ${(e as Error).message.slice(0, 300)}`);
    }
    this.committed("testSend", user, id, await this.d.store.note(id, user.email, "testSend", { revision: m.revision, digest, to: user.email }), m.revision);
    return { to: user.email, revision: m.revision, digest, subject };
  }

  /**
   * Four eyes, decided here from the message as read (domain/policies.ts); the script commits the
   * decision only if no other approval or edit came in between, else it is decided again.
   */
  async approve(user: User, id: string, opts: { comment?: string; revision: number; digest?: string }): Promise<Message> {
    if (!mayDecide(user)) throw new DomainError("forbidden", "only an approver or an admin may approve");
    return this.decideOnFreshRead(user, id, "approve", async (current) => {
      const refusal = approvalRefusal(current.author, user.email, current.approvals);
      if (refusal === "self_approval") throw new DomainError("self_approval", "nobody approves their own message");
      if (refusal === "already_approved") throw new DomainError("already_approved", "you already approved this revision");
      const now = this.d.clock.now();
      const { to, releaseAt } = approvalOutcome(
        { approvalsGiven: current.approvals.length, requiredApprovals: current.requiredApprovals, holdSeconds: current.holdSeconds, sendAtMs: current.sendAt ? Date.parse(current.sendAt) : null },
        now,
      );
      const revision = opts.revision;
      if (revision !== current.revision) {
        throw new DomainError("stale_revision", `message ${id} is at revision ${current.revision}, not ${revision}: review it again`, { state: current.state, revision: current.revision });
      }
      if (opts.digest !== undefined && opts.digest !== current.digest) {
        throw new DomainError("conflict", `message ${id}'s revision ${revision} has digest ${current.digest}, not the one you reviewed`, { state: current.state, digest: current.digest });
      }
      return this.d.store.approve(id, user.email, { revision, seenApprovals: current.approvals.length, to, releaseAt, comment: opts.comment ?? "", digest: current.digest }, now);
    });
  }

  async reject(user: User, id: string, opts: { reason: string; revision?: number }): Promise<Message> {
    if (!mayDecide(user)) throw new DomainError("forbidden", "only an approver or an admin may reject");
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
  recall(user: User, id: string, opts: { reason: string; correctionText?: string }): Promise<Message & { delivered: number }> {
    return this.asStop(() => this.recallNow(user, id, opts));
  }

  /** Runs a stop (a recall, an ops pause) while this process's bulk work waits (MessageServiceDeps.bulkPace). */
  private asStop<T>(work: () => Promise<T>): Promise<T> {
    return this.d.bulkPace ? this.d.bulkPace.duringStop(work) : work();
  }

  private async recallNow(user: User, id: string, opts: { reason: string; correctionText?: string }): Promise<Message & { delivered: number }> {
    const text = opts.correctionText?.trim() ? opts.correctionText : "";
    const required = text ? this.d.config.CORRECTION_APPROVALS : 0;
    const current = await this.get(user, id);
    if (!this.mayRecall(user, current)) throw new DomainError("forbidden", "authors may recall only their own messages");
    // The stop first: nothing is built before the recall commits (the text's own rules were
    // checked with the input). The custom correction is built right after, from the stopped message.
    const answer = await this.followingLag(id, this.d.store.recall(id, user.email, opts.reason, { text, required }, this.d.purge ?? null)).catch(async (e: unknown) => {
      // Recalled on the primary, not yet on the replicas: the custom text still needs its digest, or nobody could approve it.
      if (e instanceof ReplicationLagError && (e.answer as { ok?: boolean } | undefined)?.ok && text && required > 0) await this.recordCorrectionDigest(id, user).catch(() => {});
      throw e;
    });
    const ok = this.committed("recall", user, id, answer, current.revision);
    // Nothing of the original was inside an SMTP transaction and there is nobody to correct: the
    // recall's answer is the stop. (A correction that starts now is observed by the follow-up.)
    if (ok.state === "recalled" || ok.state === "corrected") this.d.metrics?.recallToStop.observe(0);
    await this.d.followUps.carryOut(id, ok.followUps);
    if (text && required > 0) await this.recordCorrectionDigest(id, user);
    const m = (await this.d.store.get(id))!;
    return { ...m, delivered: ok.delivered };
  }

  /**
   * Builds the custom correction as it would go out and records its digest, which every approval
   * of the text then names. If it cannot be built, nobody can approve it (a 409 says why) and the
   * recaller switches to the standard correction; the recall itself already stopped the fan-out.
   */
  private async recordCorrectionDigest(id: string, user: User): Promise<void> {
    const m = (await this.d.store.get(id))!;
    if (m.correction?.status !== "pending") return;
    try {
      const built = await correctionAsSent(this.d.renderer, m, new Date(this.d.clock.now()));
      await this.d.store.setCorrectionDigest(id, user.email, built.digest);
    } catch (e) {
      if (e instanceof ReplicationLagError) throw e; // recorded, not yet on the replicas: the caller hears it
      this.d.logger?.info({ message: id }, `message ${id}: the correction text cannot be built as a mail (${(e as Error).message}); it cannot be approved`);
    }
  }

  /**
   * Approves a custom correction text (an approver other than the person who recalled). With
   * `CORRECTION_APPROVALS` approvals it is approved and the correction starts (once the original
   * has stopped). `digest`, when given, must be the one of the correction the approver reviewed.
   */
  async approveCorrection(user: User, id: string, opts: { digest?: string; comment?: string }): Promise<Message> {
    if (!mayDecide(user)) throw new DomainError("forbidden", "only an approver or an admin may approve a correction text");
    return this.decideCorrection("approveCorrection", user, id, opts.digest, { comment: opts.comment ?? "" });
  }

  /** Rejects a custom correction text: the standard correction goes instead. */
  async rejectCorrection(user: User, id: string, opts: { reason: string }): Promise<Message> {
    if (!mayDecide(user)) throw new DomainError("forbidden", "only an approver or an admin may reject a correction text");
    return this.decideCorrection("rejectCorrection", user, id, undefined, { reason: opts.reason });
  }

  /** The person who recalled (or ops, admin) sends the standard correction instead of their text, at any time before a decision. */
  async useStandardCorrection(user: User, id: string): Promise<Message> {
    const current = await this.get(user, id);
    if (!(current.recall && sameIdentity(current.recall.by, user.email)) && !has(user, "ops", "admin")) {
      throw new DomainError("forbidden", "only the person who recalled (or ops) may switch to the standard correction");
    }
    return this.decideCorrection("standardCorrection", user, id, undefined, {});
  }

  private async decideCorrection(
    action: "approveCorrection" | "rejectCorrection" | "standardCorrection",
    user: User,
    id: string,
    digest: string | undefined,
    detail: { comment?: string; reason?: string },
  ): Promise<Message> {
    return this.decideOnFreshRead(user, id, action, async (current) => {
      const c = current.correction;
      if (!c || c.status !== "pending") throw new DomainError("conflict", `message ${id} has no correction text awaiting approval`, { state: current.state, correction: c?.status ?? null });
      if (action !== "standardCorrection") {
        // Four eyes on the correction too: never the person who recalled, each approver once.
        if (current.recall && sameIdentity(current.recall.by, user.email)) throw new DomainError("self_approval", "nobody decides on the correction text they wrote");
        if (action === "approveCorrection" && c.approvals.some((a) => sameIdentity(a.by, user.email))) throw new DomainError("already_approved", "you already approved this correction text");
      }
      if (action === "approveCorrection" && !c.digest) throw new DomainError("conflict", "the correction text could not be built as a mail: it cannot be approved (reject it, or the recaller switches to the standard correction)", { state: current.state });
      if (digest !== undefined && digest !== c.digest) throw new DomainError("conflict", `the correction text's digest is ${c.digest}, not the one you reviewed`, { state: current.state, digest: c.digest });
      return this.d.store.decideCorrection(action, id, user.email, { approvals: c.approvals.length, digest: c.digest }, detail);
    });
  }

  /**
   * Holds a running fan-out (ops, admin): no further recipient is claimed once this answers;
   * transactions already under way finish. The message stays `sending` (or `correcting`), and a
   * recall still works while it is held.
   */
  pause(user: User, id: string, opts: { reason: string }): Promise<Message> {
    return this.asStop(async () => {
      if (!this.mayPause(user)) throw new DomainError("forbidden", "only ops and admins may pause a fan-out");
      const current = await this.get(user, id);
      this.committed("pause", user, id, await this.d.store.pauseOrResume("pause", id, user.email, opts.reason), current.revision);
      return (await this.d.store.get(id))!;
    });
  }

  /**
   * Lets a held fan-out go on. Its batch jobs wait out the pause in BullMQ's delayed set and would
   * look again within PAUSE_RECHECK_MS; the follow-up wakes them now.
   */
  async resume(user: User, id: string): Promise<Message> {
    if (!this.mayPause(user)) throw new DomainError("forbidden", "only ops and admins may resume a fan-out");
    const current = await this.get(user, id);
    const ok = this.committed("resume", user, id, await this.followingLag(id, this.d.store.pauseOrResume("resume", id, user.email)), current.revision);
    await this.d.followUps.carryOut(id, ok.followUps);
    return (await this.d.store.get(id))!;
  }

  /**
   * Halts a send (ops, admin): the ops pause, named for what it is in a staged send. Nothing more
   * is claimed once this answers; ops then continue it or someone recalls it.
   */
  async halt(user: User, id: string, opts: { reason: string }): Promise<Message> {
    if (!this.mayPause(user)) throw new DomainError("forbidden", "only ops and admins may halt a send");
    return this.pause(user, id, { reason: `halted: ${opts.reason}` });
  }

  /**
   * Continues a staged send (ops, admin): lifts a halt (its jobs wake) and starts the next wave now:
   * the canary during the seed cohort, else the rest. `from`: the phase the person saw; a continue
   * from a phase the send has left is refused (409), so a retry never moves it on twice. Answered
   * once the replicas have it (REDIS_MIN_REPLICAS_ACK), like a recall.
   */
  async continueWaves(user: User, id: string, opts: { from?: ContinuePhase } = {}): Promise<Message> {
    if (!this.mayPause(user)) throw new DomainError("forbidden", "only ops and admins may continue a staged send");
    const current = await this.get(user, id);
    const ok = this.committed("continue", user, id, await this.followingLag(id, this.d.store.wavesRest(id, user.email, "continue", opts.from)), current.revision);
    await this.d.followUps.carryOut(id, ok.followUps);
    return (await this.d.store.get(id))!;
  }

  /** What a staged send's early recipients showed (replies, reports, bounces, failures), newest first. */
  async signals(user: User, id: string): Promise<SignalEvidence[]> {
    await this.get(user, id);
    return this.d.store.signalEvidence(id);
  }

  mayPause(user: User): boolean {
    return has(user, "ops", "admin");
  }

  mayRecall(user: User, m: ListedMessage): boolean {
    return has(user, "approver", "ops", "admin") || (has(user, "author") && sameIdentity(m.author, user.email));
  }

  /**
   * Where this user stands on a decision about the message (`original`: approve / reject it) or its
   * custom correction text (`correction`), by the rules `approve`, `reject`, `approveCorrection` and
   * `rejectCorrection` apply: `open` (both are theirs to do), `approved` (they approved it already:
   * only a rejection is left), or why neither is theirs. For pages, which offer only what would pass.
   */
  decisionStanding(user: User, m: ListedMessage, of: "original" | "correction"): DecisionStanding {
    // Their own message (or correction text) first: whatever their roles, that is why it is not theirs.
    if (of === "original") {
      if (sameIdentity(m.author, user.email)) return "own_message";
      if (!mayDecide(user)) return "not_approver";
      if (m.state !== "pending_approval") return "closed";
      return m.approvals.some((a) => sameIdentity(a.by, user.email)) ? "approved" : "open";
    }
    const c = m.correction;
    if (!c || c.status !== "pending") return "closed";
    if (m.recall && sameIdentity(m.recall.by, user.email)) return "own_correction";
    if (!mayDecide(user)) return "not_approver";
    return c.approvals.some((a) => sameIdentity(a.by, user.email)) ? "approved" : "open";
  }

  /** What waits for this user's approval in the message: the message itself, its correction text, or nothing. */
  awaitingDecisionOf(user: User, m: ListedMessage): "original" | "correction" | null {
    if (this.decisionStanding(user, m, "original") === "open") return "original";
    if (this.decisionStanding(user, m, "correction") === "open") return "correction";
    return null;
  }

  /** Whether `create` lets this user write a message. */
  mayCompose(user: User): boolean {
    return has(user, "author", "admin");
  }

  /**
   * What the compose page offers and foretells, from the very policy submit applies: the sender
   * mailboxes this user may choose (MAIL_FROM first, the default), the minimum hold, the approvals a
   * recipient count will need, and the domain of the `To:` header's audience addresses.
   */
  composeRules(user: User): ComposeRules {
    const c = this.d.config;
    const policy = { approvalsRequired: c.APPROVALS_REQUIRED, largeAudienceThreshold: c.LARGE_AUDIENCE_THRESHOLD, largeAudienceApprovals: c.LARGE_AUDIENCE_APPROVALS };
    return {
      senders: senderMailboxes(c.MAIL_FROM, user.senders),
      holdMinSeconds: c.HOLD_MIN_SECONDS,
      approvalsFor: (recipientCount) => requiredApprovals(recipientCount, policy),
      mailDomain: this.mailDomain(),
    };
  }

  /** check() and, when it passed, the log line of the action. */
  private committed<A extends { ok: true; state: string; revision?: number } | Refusal>(action: string, user: User, id: string, a: A, knownRevision?: number): Ok<A> {
    const ok = this.check(a, id);
    const revision = ok.revision ?? knownRevision;
    this.d.logger?.info({ message: id, revision, actor: user.email, action, state: ok.state }, `message ${id}: ${action} by ${user.email} -> ${ok.state}`);
    return ok;
  }

  /**
   * A decision taken on a fresh read of the message: `decide` checks the read and runs the script,
   * which refuses with `stale_read` when another decision overtook the read (approvals counted,
   * digest); it is then read and decided again, APPROVE_ATTEMPTS times at most. Committed, its
   * follow-ups are carried out (also when the replicas lag: followingLag).
   */
  private async decideOnFreshRead<A extends { ok: true; state: string; revision?: number; followUps: FollowUp[] } | Refusal>(
    user: User,
    id: string,
    action: string,
    decide: (current: Message) => Promise<A>,
  ): Promise<Message> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.get(user, id);
      const answer = await this.followingLag(id, decide(current));
      if (!answer.ok && answer.err === "stale_read" && attempt < APPROVE_ATTEMPTS) continue;
      const ok = this.committed(action, user, id, answer, current.revision);
      await this.d.followUps.carryOut(id, ok.followUps);
      return (await this.d.store.get(id))!;
    }
  }

  /**
   * A decision recorded on the Redis primary but not confirmed by enough replicas in time still
   * happened there: what must follow it (a release to schedule, a correction to start, jobs to wake)
   * is carried out before the 503 goes back, so a retry finds it done rather than stranded.
   */
  private async followingLag<A>(id: string, p: Promise<A>): Promise<A> {
    try {
      return await p;
    } catch (e) {
      if (e instanceof ReplicationLagError) {
        const a = e.answer as { ok?: boolean; followUps?: FollowUp[] } | undefined;
        if (a?.ok && a.followUps?.length) await this.d.followUps.carryOut(id, a.followUps);
      }
      throw e;
    }
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
      case "audience_changed":
        throw new DomainError("conflict", `audience ${String(r.audience)} kept changing while the message's recipients were being frozen: submit again`, { audience: r.audience });
      case "unknown_audience":
        throw new DomainError("invalid_input", `audience ${String(r.audience)} does not exist`, [{ path: ["audience", "lists"], message: `unknown audience ${String(r.audience)}` }]);
      case "no_recipients":
        throw new DomainError("invalid_input", "the message has no recipients", [{ path: ["audience"], message: "no recipients" }]);
      case "already_paused":
        throw new DomainError("conflict", `message ${id}'s fan-out is already paused`, { state: r.state });
      case "not_paused":
        throw new DomainError("conflict", `message ${id}'s fan-out is not paused`, { state: r.state });
      case "revision_limit":
        throw new DomainError("conflict", `message ${id} has ${String(r.count)} revisions, the most MAX_REVISIONS allows: withdraw it and write a new message`, {
          state: r.state,
          revision: r.revision,
          maxRevisions: r.count,
        });
      case "too_many_recipients":
        throw new DomainError("too_large", `the message has ${String(r.count)} recipients, more than allowed`);
      case "not_pending":
        throw new DomainError("conflict", `message ${id} has no correction text awaiting approval`, { state: r.state });
      case "not_staged":
        throw new DomainError("conflict", `message ${id} is not a staged send: it has no waves to continue`, { state: r.state });
      case "planning":
        throw new DomainError("conflict", `message ${id}'s waves are being planned: continue in a moment`, { state: r.state });
      case "not_halted":
        throw new DomainError("conflict", `message ${id}: every wave is going and nothing is halted`, { state: r.state });
      case "moved_on":
        throw new DomainError("conflict", `message ${id} has moved on since that phase: look at it again before continuing`, { state: r.state });
      case "plan_missing":
        throw new DomainError("conflict", `message ${id}'s plan of waves is being made again`, { state: r.state });
      case "staging_unbuilt":
        throw new DomainError("conflict", `message ${id}'s audience kept growing while it was submitted: submit again`, { state: r.state });
      case "not_sent":
      case "halted":
      case "not_due":
      case "already":
        throw new DomainError("conflict", `message ${id}: ${r.err}`, { state: r.state });
    }
  }
}

/** A stored draft as the input it was saved from, to check it as a complete message. */
function draftAsInput(m: Message): Record<string, unknown> {
  const body = m.markdown ? { markdown: m.markdown, ...(m.template ? { template: m.template } : {}) } : { ...(m.text ? { text: m.text } : {}), ...(m.html ? { html: m.html } : {}) };
  return {
    ...(m.subject ? { subject: m.subject } : {}),
    ...body,
    from: m.from,
    audience: { ...(m.audience.lists.length ? { lists: m.audience.lists } : {}), ...(m.audience.addresses.length ? { addresses: m.audience.addresses } : {}) },
    // A hold of 0 (HOLD_MIN_SECONDS=0) is "the minimum", which the input says by leaving it out.
    ...(m.holdSeconds > 0 ? { holdMinutes: m.holdSeconds / 60 } : {}),
    ...(m.sendAt ? { sendAt: m.sendAt } : {}),
  };
}
