import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { mainRecipient, parseDeliveryStatus, parseDsnMail } from "../../src/inbound/dsn.js";
import { dsnFixture } from "../support/dsn-fixtures.js";

describe("DSN fixtures", () => {
  it("Office 365: failed, 5.1.10, the recipient and the resolver's diagnostic", async () => {
    const dsn = await parseDsnMail(dsnFixture("office365.eml"));
    expect(dsn?.reportingMta).toBe("AM0PR01MB1234.eurprd01.prod.exchangelabs.com");
    expect(dsn?.recipients).toEqual([
      {
        action: "failed",
        outcome: "failed",
        status: "5.1.10",
        permanent: true,
        finalRecipient: "jdoe@contoso.com",
        originalRecipient: "jdoe@contoso.com",
        diagnostic: "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient jdoe@contoso.com not found by SMTP address lookup",
      },
    ]);
  });

  it("Postfix: failed, 5.1.1, the remote MTA and the unfolded diagnostic", async () => {
    const dsn = await parseDsnMail(dsnFixture("postfix-failed.eml"));
    expect(dsn?.reportingMta).toBe("mail.example.org");
    expect(dsn?.recipients).toEqual([
      {
        action: "failed",
        outcome: "failed",
        status: "5.1.1",
        permanent: true,
        finalRecipient: "m.rossi@example.org",
        originalRecipient: "m.rossi@example.org",
        remoteMta: "mx1.example.org",
        diagnostic: "550 5.1.1 <m.rossi@example.org>: Recipient address rejected: User unknown in virtual mailbox table",
      },
    ]);
  });

  it("Postfix delay warning: delayed, 4.4.1, not permanent", async () => {
    const r = mainRecipient((await parseDsnMail(dsnFixture("postfix-delayed.eml")))!);
    expect(r).toMatchObject({ action: "delayed", outcome: "delayed", status: "4.4.1", permanent: false, finalRecipient: "k.tanaka@example.net" });
    expect(r?.diagnostic).toBe("connect to mx.example.net[192.0.2.80]:25: Connection timed out");
  });

  it("Gmail: failed, 5.1.1, the textual diagnostic", async () => {
    const dsn = await parseDsnMail(dsnFixture("gmail.eml"));
    expect(dsn?.reportingMta).toBe("googlemail.com");
    const r = mainRecipient(dsn!);
    expect(r).toMatchObject({ action: "failed", status: "5.1.1", permanent: true, finalRecipient: "no.such.user.4711@gmail.com" });
    expect(r?.remoteMta).toBe("gmail-smtp-in.l.google.com. (2607:f8b0:4023:1004::1a, the server for the domain gmail.com.)");
    expect(r?.diagnostic).toMatch(/^The email account that you tried to reach does not exist\..*gsmtp$/);
  });

  it("is null for a mail without a delivery-status part (an auto-reply to the return path)", async () => {
    const ooo = Buffer.from("From: a@x.example\r\nTo: b@y.example\r\nSubject: Out of Office\r\nAuto-Submitted: auto-replied\r\n\r\nI am away.\r\n");
    expect(await parseDsnMail(ooo)).toBeNull();
    expect(await parseDsnMail(Buffer.from(""))).toBeNull();
    expect(await parseDsnMail(Buffer.from("\u0000\u0001garbage"))).toBeNull();
  });
});

describe("parseDeliveryStatus", () => {
  it("reads several recipients, a status with a comment, a missing action, and keeps the first of a repeated field", () => {
    const dsn = parseDeliveryStatus(
      [
        "Reporting-MTA: dns; mx.example",
        "Original-Envelope-Id: 42-7",
        "",
        "Final-Recipient: rfc822; a@x.example",
        "Action: failed (bad mailbox)",
        "Status: 5.2.2 (mailbox full)",
        "Status: 2.0.0",
        "",
        "Final-Recipient: rfc822; b@x.example",
        "Status: 4.7.1",
        "",
        "",
        "Final-Recipient: rfc822; c@x.example",
        "Action: delivered",
        "Status: 2.0.0",
      ].join("\r\n"),
    );
    expect(dsn.envelopeId).toBe("42-7");
    expect(dsn.recipients.map((r) => [r.finalRecipient, r.action, r.outcome, r.status, r.permanent])).toEqual([
      ["a@x.example", "failed", "failed", "5.2.2", true],
      ["b@x.example", "", "delayed", "4.7.1", false],
      ["c@x.example", "delivered", "delivered", "2.0.0", false],
    ]);
    expect(mainRecipient(dsn)?.finalRecipient).toBe("a@x.example");
  });

  it("bounds what it keeps and strips control characters", () => {
    const dsn = parseDeliveryStatus(`Final-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.0.0\nDiagnostic-Code: smtp; ${"x\u0007".repeat(2_000)}`);
    const d = dsn.recipients[0]!.diagnostic!;
    expect(d.length).toBeLessThanOrEqual(500);
    expect(d).not.toMatch(/[\u0000-\u001f]/);
    const many = Array.from({ length: 300 }, (_, i) => `Final-Recipient: rfc822; r${i}@x.example\nAction: failed\nStatus: 5.1.1`).join("\n\n");
    expect(parseDeliveryStatus(many).recipients.length).toBe(100);
  });

  it("never throws", () => {
    fc.assert(fc.property(fc.string({ maxLength: 2_000 }), (s) => void parseDeliveryStatus(s)));
  });
});
