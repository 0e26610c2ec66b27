import { describe, expect, it } from "vitest";
import { approvalRefusal, effectiveHoldSeconds, releaseAt, requiredApprovals, senderAllowed } from "../../src/domain/policies.js";

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

  it("accepts MAIL_FROM and the author's listed senders only", () => {
    const mailFrom = "Internal Communications <comms@corp.example>";
    expect(senderAllowed("Comms <COMMS@corp.example>", mailFrom, undefined)).toBe(true);
    expect(senderAllowed("ceo@corp.example", mailFrom, undefined)).toBe(false);
    expect(senderAllowed("CEO <ceo@corp.example>", mailFrom, ["ceo@corp.example"])).toBe(true);
  });
});
