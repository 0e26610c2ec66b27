import { describe, expect, it } from "vitest";
import { approvalRefusal, effectiveHoldSeconds, releaseAt, requiredApprovals, senderMailboxes } from "../../src/domain/policies.js";
import { chooseSender, formatMailbox, parseMailbox } from "../../src/domain/sender.js";

const policy = { approvalsRequired: 1, largeAudienceThreshold: 1000, largeAudienceApprovals: 2 };

describe("policies", () => {
  it("requires two approvals from the large-audience threshold on", () => {
    expect(requiredApprovals(999, policy)).toBe(1);
    expect(requiredApprovals(1000, policy)).toBe(2);
    expect(requiredApprovals(840_000, policy)).toBe(2);
  });

  it("never lets a hold be shorter than the minimum", () => {
    expect(effectiveHoldSeconds(undefined, 900)).toBe(900);
    expect(effectiveHoldSeconds(1, 900)).toBe(900);
    expect(effectiveHoldSeconds(60, 900)).toBe(3600);
  });

  it("releases at the later of approval + hold and sendAt", () => {
    expect(releaseAt(1_000_000, 900, null)).toBe(1_900_000);
    expect(releaseAt(1_000_000, 900, 5_000_000)).toBe(5_000_000);
    expect(releaseAt(1_000_000, 900, 1_500_000)).toBe(1_900_000);
  });

  it("refuses self-approval whatever the case, and counts each approver once", () => {
    expect(approvalRefusal("Ann@corp.example", "ann@corp.example", [])).toBe("self_approval");
    expect(approvalRefusal("ann@corp.example", "bob@corp.example", [{ by: "BOB@corp.example" }])).toBe("already_approved");
    expect(approvalRefusal("ann@corp.example", "bob@corp.example", [{ by: "cat@corp.example" }])).toBeNull();
  });

  it("lets an author choose MAIL_FROM or their own senders by address, always with the configured name", () => {
    const mailFrom = "Internal Communications <comms@corp.example>";
    const ceo = { name: "CEO Office", address: "ceo@corp.example" };
    const mine = senderMailboxes(mailFrom, [ceo]);
    expect(chooseSender(undefined, mine)).toEqual({ ok: true, mailbox: { name: "Internal Communications", address: "comms@corp.example" } });
    expect(chooseSender("Anything <COMMS@corp.example>", mine)).toEqual({ ok: true, mailbox: { name: "Internal Communications", address: "comms@corp.example" } });
    expect(chooseSender("ceo@corp.example", mine)).toEqual({ ok: true, mailbox: ceo });
    expect(chooseSender("ceo@corp.example", senderMailboxes(mailFrom, []))).toMatchObject({ ok: false, reason: expect.stringContaining("not one of your sender mailboxes") });
  });

  it("refuses anything but one plain mailbox: a second address, a group, an address in the display name", () => {
    const mine = senderMailboxes("Internal Communications <comms@corp.example>", []);
    for (const spoof of [
      "CEO <ceo@corp.example> <comms@corp.example>",
      "ceo@corp.example, <comms@corp.example>",
      "comms@corp.example, ceo@corp.example",
      "Team: comms@corp.example;",
      '"ceo@corp.example" <comms@corp.example>',
      "ceo@corp.example <comms@corp.example>",
      "CEO <comms@corp.example>>",
      "Comms\r\nBcc: x@evil.example <comms@corp.example>",
      "Comms \u2028 <comms@corp.example>",
      "",
    ]) {
      expect(chooseSender(spoof, mine), spoof).toMatchObject({ ok: false });
    }
  });

  it("formats a mailbox so that it parses back to the same one", () => {
    for (const name of ["Internal Communications", 'Comms "Team"', "O'Brien, Pat", "Équipe Comms", ""]) {
      const m = { name, address: "comms@corp.example" };
      expect(parseMailbox(formatMailbox(m))).toEqual({ ok: true, mailbox: m });
    }
  });
});
