import { describe, expect, it } from "vitest";
import { AIRLOCK_ACTOR, type Message } from "../../src/domain/message.js";
import { planNotifications, type AuditEntry } from "../../src/notify/dispatcher.js";
import { formatDateTime, formatDuration, formatTime } from "../../src/notify/format.js";
import { reminderDue } from "../../workers/timers.js";

const approvers = ["ann@corp.example", "bob@corp.example", "author@corp.example"];
const ops = ["ops@corp.example", "ann@corp.example"];
const message = (over: Partial<Message> = {}): Message =>
  ({ id: "7", revision: 2, author: "author@corp.example", approvals: [], recall: null, ...over }) as Message;
const entry = (action: string, over: Partial<AuditEntry> = {}): AuditEntry => ({ message: "7", revision: "2", actor: "x@corp.example", action, from: "", to: "", ...over });
const plan = (e: AuditEntry, m: Message) => planNotifications(e, m, { approvers, ops }).map((p) => `${p.kind} ${p.to}`).sort();

describe("who is told what", () => {
  it("compares identities without regard to case, and tells nobody outside ALLOWED_RECIPIENT_DOMAINS", () => {
    const m = message({ author: "Author@Corp.example" });
    expect(planNotifications(entry("submit"), m, { approvers: [...approvers, "eve@elsewhere.example"], ops }).map((p) => p.to).sort()).toEqual(["ann@corp.example", "bob@corp.example", "eve@elsewhere.example"]);
    expect(planNotifications(entry("submit"), m, { approvers: [...approvers, "eve@elsewhere.example"], ops, allowedDomains: ["corp.example"] }).map((p) => p.to).sort()).toEqual(["ann@corp.example", "bob@corp.example"]);
  });

  it("asks every approver but the author, on submit and on edit", () => {
    for (const action of ["submit", "edit"]) {
      expect(plan(entry(action), message())).toEqual(["approval_request ann@corp.example", "approval_request bob@corp.example"]);
    }
  });

  it("reminds only approvers who have not approved the current revision", () => {
    const m = message({ approvals: [{ by: "ann@corp.example", at: "", comment: null, digest: null }] });
    expect(plan(entry("remind"), m)).toEqual(["reminder bob@corp.example"]);
    expect(plan(entry("remind", { revision: "1" }), m)).toEqual([]); // an old revision's reminder
  });

  it("tells author and approvers once scheduled, not on a partial approval", () => {
    const m = message({ approvals: [{ by: "ann@corp.example", at: "", comment: null, digest: null }] });
    expect(plan(entry("approve", { to: "scheduled" }), m)).toEqual(["scheduled ann@corp.example", "scheduled author@corp.example"]);
    expect(plan(entry("approve", { to: "pending_approval" }), m)).toEqual([]);
  });

  it("tells the recaller too, once each, and the author alone about rejection and expiry", () => {
    const m = message({ approvals: [{ by: "ann@corp.example", at: "", comment: null, digest: null }] });
    expect(plan(entry("recall", { actor: "ops@corp.example" }), m)).toEqual(["recalled ann@corp.example", "recalled author@corp.example", "recalled ops@corp.example"]);
    expect(plan(entry("recall", { actor: "author@corp.example" }), m)).toEqual(["recalled ann@corp.example", "recalled author@corp.example"]);
    const recalled = message({ recall: { by: "ops@corp.example", at: "", reason: "", correctionText: null, deliveredAtRecall: 3 } });
    expect(plan(entry("finishCorrection", { actor: "worker" }), recalled)).toEqual(["corrected author@corp.example", "corrected ops@corp.example"]);
    expect(plan(entry("reject"), m)).toEqual(["rejected author@corp.example"]);
    expect(plan(entry("expire", { actor: "scheduler" }), m)).toEqual(["expired author@corp.example"]);
  });

  it("asks every approver but the recaller to approve a custom correction text, only while it is pending", () => {
    const m = message({ approvals: [{ by: "ann@corp.example", at: "", comment: null, digest: null }] });
    const pending = entry("recall", { actor: "bob@corp.example", detail: JSON.stringify({ reason: "oops", correction: "pending" }) });
    expect(plan(pending, m)).toEqual([
      "correction_request ann@corp.example",
      "correction_request author@corp.example", // the author may approve the text someone else wrote
      "recalled ann@corp.example",
      "recalled author@corp.example",
      "recalled bob@corp.example",
    ]);
    for (const correction of ["standard", "approved"]) {
      const e = entry("recall", { actor: "bob@corp.example", detail: JSON.stringify({ correction }) });
      expect(plan(e, m).filter((p) => p.startsWith("correction_request"))).toEqual([]);
    }
    // An unreadable detail asks nobody (and still reports the recall).
    expect(plan(entry("recall", { actor: "bob@corp.example", detail: "{" }), m)).toEqual(["recalled ann@corp.example", "recalled author@corp.example", "recalled bob@corp.example"]);
  });

  it("tells ops, the author and the approvers when Airlock halts a fan-out, nobody when a person pauses it", () => {
    const m = message({ approvals: [{ by: "bob@corp.example", at: "", comment: null, digest: null }] });
    expect(plan(entry("pause", { actor: AIRLOCK_ACTOR, detail: JSON.stringify({ reason: "not sent: digest" }) }), m)).toEqual([
      "halted ann@corp.example",
      "halted author@corp.example",
      "halted bob@corp.example",
      "halted ops@corp.example",
    ]);
    expect(plan(entry("pause", { actor: "ops@corp.example" }), m)).toEqual([]);
    expect(plan(entry("resume", { actor: "ops@corp.example" }), m)).toEqual([]);
  });

  it("ignores everything else, including its own notification entries", () => {
    for (const action of ["notify", "notifyFailed", "release", "finish", "startCorrection", "withdraw"]) expect(plan(entry(action), message())).toEqual([]);
  });
});

describe("formatting for people", () => {
  it("says UTC and reads naturally", () => {
    const t = Date.UTC(2026, 10, 22, 14, 5);
    expect(formatTime(t)).toBe("14:05 UTC");
    expect(formatDateTime(t)).toBe("22 November 2026, 14:05 UTC");
    expect(formatDuration(45)).toBe("45 seconds");
    expect(formatDuration(900)).toBe("15 minutes");
    expect(formatDuration(5400)).toBe("1 hour 30 minutes");
    expect(formatDuration(3 * 86400 + 7200 + 60)).toBe("3 days 2 hours");
    expect(formatDuration(60)).toBe("1 minute");
  });

  it("reminds at half the approval time-to-live", () => {
    expect(reminderDue(1000, 1000 + 72 * 3600_000)).toBe(1000 + 36 * 3600_000);
  });
});
