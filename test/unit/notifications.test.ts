import { describe, expect, it } from "vitest";
import { composeCorrection, composeOriginal } from "../../src/mail/compose.js";
import { createNotificationRenderer } from "../../src/mail/notifications.js";
import { createRenderer, templatesDir } from "../../src/mail/render.js";
import type { ApprovalRequestData, CorrectionRequestData, HaltedData, MessageSummary, NotificationKind, SentMail } from "../../src/notify/notification-data.js";

const renderer = createNotificationRenderer();
const mailRenderer = createRenderer(templatesDir());

/** The mail as the fan-out builds it (mail/compose.ts), as the notify worker passes it. */
async function sent(over: { subject?: string; text?: string; html?: string | null } = {}): Promise<SentMail> {
  const fields = {
    subject: over.subject ?? "Delete TikTok from your phone",
    text: over.text ?? "Hello all,\n\nPlease delete the app by Friday.",
    html: over.html ?? null,
    markdown: "",
    template: "",
    from: "Internal Communications <comms@corp.example>",
    toHeader: "All staff <all-staff@corp.example>",
    messageId: "<airlock.42@corp.example>",
  };
  const built = await composeOriginal(mailRenderer, fields, new Date("2026-11-22T14:05:00Z"));
  return { of: "original", revision: 1, subject: built.parts.subject, from: fields.from, text: built.parts.text, html: built.parts.html, digest: built.digest };
}
const mail = await sent();
const XSS = `<script>alert("x")</script>`;

const message: MessageSummary = {
  id: "42",
  revision: 1,
  subject: "Delete TikTok from your phone",
  from: "Internal Communications <comms@corp.example>",
  author: "alice@corp.example",
  authorName: "Alice Martin",
  recipientCount: 840_000,
  audiences: [
    { name: "all-staff", count: 812_345 },
    { name: "contractors", count: 45_210 },
  ],
  explicitCount: 12,
  text: "Hello all,\n\nPlease delete the app by Friday.",
  html: null,
  dashboardUrl: "https://airlock.corp.example/messages/42",
};

const approval: ApprovalRequestData = {
  recipientName: "Bob Approver",
  message,
  reminder: false,
  hold: "15 minutes",
  earliestRelease: "22 November 2026, 14:05 UTC",
  sendAt: null,
  approvalsRequired: 2,
  approvalsGiven: 1,
  approvedBy: ["Carol Chief"],
  expiresAt: "23 November 2026, 13:50 UTC",
  diff: null,
  mail,
  approveUrl: "https://airlock.corp.example/links/approve-token.sig1",
  rejectUrl: "https://airlock.corp.example/links/reject-token.sig2",
  reviewUrl: "https://airlock.corp.example/messages/42/review",
};

const scheduled = {
  recipientName: "Alice Martin",
  message,
  releaseTime: "14:05 UTC",
  releaseAt: "22 November 2026, 14:05 UTC",
  inMinutes: 12,
  approvedBy: ["Bob Approver", "Carol Chief"],
  recallUrl: "https://airlock.corp.example/links/recall-token.sig3",
};

const recalled = {
  recipientName: "Alice Martin",
  message,
  recalledBy: "Carol Chief",
  reason: "Sent to the wrong audience",
  correctionText: "Keep the app.\nIt is fine.",
  delivered: 1_234,
  skipped: 838_766,
  nothingSent: false,
};

/** Lines of the text part that are exactly this string. */
const ownLines = (text: string, s: string) => text.split("\n").filter((l) => l === s).length;

describe("approval request", () => {
  const r = renderer.render("approval_request", approval);

  it("has the approval subject", () => {
    expect(r.subject).toBe("[Airlock] Approval needed: Delete TikTok from your phone");
  });

  it("shows author, sender, recipients per audience and in total, hold, release, approvals and expiry", () => {
    for (const part of [r.html, r.text]) {
      expect(part).toContain("Alice Martin");
      expect(part).toContain("alice@corp.example");
      expect(part).toContain("Delete TikTok from your phone");
      expect(part).toContain("840,000 recipients");
      expect(part).toMatch(/all-staff: 812,345/);
      expect(part).toMatch(/contractors: 45,210/);
      expect(part).toMatch(/[Ee]xplicit addresses: 12/);
      expect(part).toContain("15 minutes");
      expect(part).toContain("22 November 2026, 14:05 UTC");
      expect(part).toContain("1 of 2 required (approved by Carol Chief)");
      expect(part).toContain("23 November 2026, 13:50 UTC");
      expect(part).toContain("nothing happens until you confirm there");
      expect(part).not.toContain("Requested send time");
      expect(part).not.toContain("Changes since");
    }
    expect(r.html).toContain("Internal Communications &lt;comms@corp.example&gt;");
    expect(r.text).toContain("Internal Communications <comms@corp.example>");
  });

  it("has Approve and Reject buttons, the review page's link and the dashboard link", () => {
    expect(r.html).toMatch(new RegExp(`<a href="${approval.approveUrl}"[^>]*>Approve</a>`));
    expect(r.html).toMatch(new RegExp(`<a href="${approval.rejectUrl}"[^>]*>Reject</a>`));
    expect(r.html).toMatch(/<a href="https:\/\/airlock\.corp\.example\/messages\/42\/review"[^>]*>Review in Airlock<\/a>/);
    expect(r.html).toMatch(/<a href="https:\/\/airlock\.corp\.example\/messages\/42"[^>]*>Open on the dashboard<\/a>/);
  });

  it("puts each URL on its own line in the text part", () => {
    expect(ownLines(r.text, approval.approveUrl)).toBe(1);
    expect(ownLines(r.text, approval.rejectUrl)).toBe(1);
    expect(ownLines(r.text, approval.reviewUrl)).toBe(1);
    expect(ownLines(r.text, message.dashboardUrl)).toBe(1);
    expect(r.text.indexOf("Approve:")).toBeLessThan(r.text.indexOf(approval.approveUrl));
  });

  it("shows the mail exactly as sent: the HTML part in a bordered box, the text part verbatim in a monospace block, the digest", () => {
    // The HTML part is the built document's body, as is (our template, inline styles and all).
    const body = mail.html.slice(mail.html.indexOf("<body"), mail.html.indexOf("</body>"));
    const inner = body.slice(body.indexOf(">") + 1).trim();
    expect(r.html).toMatch(/border:2px solid #d4d4d8;">\s*<tr><td style="padding:0;">/);
    expect(r.html).toContain(inner);
    expect(r.html).not.toMatch(/<body[^>]*>[\s\S]*<body/); // one document, not one nested in another
    // The text part, escaped but otherwise verbatim, in a <pre>.
    const escaped = mail.text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#x27;").replace(/=/g, "&#x3D;").replace(/`/g, "&#x60;");
    expect(r.html).toMatch(/<pre style="[^"]*monospace[^"]*">/);
    expect(r.html).toContain(`>${escaped}</pre>`);
    expect(mail.text).toContain("Delete TikTok from your phone\n\nHello all,\n\nPlease delete the app by Friday.\n\n--\nSent by Internal Communications <comms@corp.example>");
    // In the text part, every line of it quoted, so it cannot pass for part of the notice.
    const quoted = mail.text.replace(/\n$/, "").split("\n").map((l) => (l ? `> ${l}` : ">")).join("\n");
    expect(r.text).toContain(quoted);
    for (const part of [r.html, r.text]) {
      expect(part).toContain(mail.digest);
      expect(part).toMatch(/exactly as (it will be )?sent/);
    }
    expect(mail.digest).toMatch(/^[0-9a-f]{64}$/);
  });

  it("shows the requested send time when there is one", () => {
    const s = renderer.render("approval_request", { ...approval, sendAt: "24 November 2026, 09:00 UTC" });
    expect(s.html).toContain("Requested send time");
    expect(s.text).toContain("Requested send time: 24 November 2026, 09:00 UTC");
  });

  it("shows the diff of a new revision, coloured in HTML and with +/- in text", () => {
    const d = renderer.render("approval_request", {
      ...approval,
      message: { ...message, revision: 3 },
      diff: [
        { field: "Text", lines: [{ op: " ", text: "Hello all," }, { op: "-", text: "Please delete the app." }, { op: "+", text: "Please keep the app." }] },
        { field: "Recipients", lines: [{ op: "-", text: "800,000" }, { op: "+", text: "840,000" }] },
      ],
    });
    expect(d.html).toContain("Changes since revision 2");
    expect(d.html).toMatch(/background:#fee2e2;[^"]*">- Please delete the app\.<\/td>/);
    expect(d.html).toMatch(/background:#dcfce7;[^"]*">\+ Please keep the app\.<\/td>/);
    expect(d.text).toContain("Text:\n  Hello all,\n- Please delete the app.\n+ Please keep the app.\n");
    expect(d.text).toContain("Recipients:\n- 800,000\n+ 840,000\n");
  });

  it("treats an empty diff like none", () => {
    const d = renderer.render("approval_request", { ...approval, diff: [] });
    expect(d.html).not.toContain("Changes since");
  });

  it("words the reminder as a reminder, from the kind", () => {
    const m = renderer.render("reminder", { ...approval, reminder: true });
    expect(m.subject).toBe("[Airlock] Reminder — approval needed: Delete TikTok from your phone");
    expect(m.text).toContain("Reminder: this message from Alice Martin is still waiting for approval");
    expect(m.html).toContain(approval.approveUrl);
    expect(ownLines(m.text, approval.rejectUrl)).toBe(1);
    expect(renderer.render("reminder", approval).subject).toMatch(/^\[Airlock\] Reminder/);
  });
});

describe("scheduled", () => {
  const r = renderer.render("scheduled", scheduled);

  it("says when and to how many, prominently, with the approvers and the Recall link", () => {
    expect(r.subject).toBe("[Airlock] Going out at 14:05 UTC to 840,000 recipients: Delete TikTok from your phone");
    for (const part of [r.html, r.text]) {
      expect(part).toContain("Going out at 14:05 UTC (in 12 minutes), to 840,000 recipients");
      expect(part).toContain("Approved by Bob Approver, Carol Chief.");
      expect(part).toContain("last chance");
      expect(part).toContain("22 November 2026, 14:05 UTC");
    }
    expect(r.html).toMatch(/font-size:20px[^>]*>Going out at 14:05 UTC/);
    expect(r.html).toMatch(new RegExp(`<a href="${scheduled.recallUrl}"[^>]*>Recall</a>`));
    expect(ownLines(r.text, scheduled.recallUrl)).toBe(1);
  });

  it("words one minute and less than a minute", () => {
    expect(renderer.render("scheduled", { ...scheduled, inMinutes: 1 }).text).toContain("(in 1 minute)");
    expect(renderer.render("scheduled", { ...scheduled, inMinutes: 0 }).text).toContain("(in less than a minute)");
  });
});

describe("recalled", () => {
  it("says who recalled, why, how many had it, and that the correction goes to them", () => {
    const r = renderer.render("recalled", recalled);
    expect(r.subject).toBe("[Airlock] Recalled: Delete TikTok from your phone");
    for (const part of [r.html, r.text]) {
      expect(part).toContain("Carol Chief recalled this message.");
      expect(part).toContain("Sent to the wrong audience");
      expect(part).toMatch(/1,234 people(<\/strong>)? had received it/);
      expect(part).toContain("838,766 recipients will not receive it");
      expect(part).toContain("A correction notice goes to the 1,234 people who received it, with this corrected information once an approver other than the person who recalled it has approved it");
    }
    expect(r.html).toContain("Keep the app.<br>\nIt is fine.");
    expect(r.text).toContain("> Keep the app.\n> It is fine.");
  });

  it("says nothing was sent when nobody received it", () => {
    const r = renderer.render("recalled", { ...recalled, delivered: 0, skipped: 840_000, nothingSent: true, correctionText: null });
    for (const part of [r.html, r.text]) {
      expect(part).toContain("Nothing was sent");
      expect(part).not.toContain("correction notice");
    }
  });

  it("without correction text, says the standard notice goes, without the reason", () => {
    const r = renderer.render("recalled", { ...recalled, correctionText: null });
    expect(r.text).toContain("A correction notice goes to the 1,234 people who received it: the standard correction, saying it was sent in error (the reason above is not in it).");
  });

  it("with correction text, says it waits for another approver", () => {
    const r = renderer.render("recalled", { ...recalled, correctionText: "Keep the app." });
    expect(r.text).toContain("once an approver other than the person who recalled it has approved it");
  });
});

describe("corrected, rejected, expired", () => {
  it("corrected: the three counts", () => {
    const r = renderer.render("corrected", { recipientName: "Alice", message, recalledBy: "Carol Chief", reason: "Wrong audience", delivered: 12_345, corrected: 12_300, correctionFailed: 45 });
    expect(r.subject).toBe("[Airlock] Correction sent: Delete TikTok from your phone");
    expect(r.text).toContain("Received the original: 12,345");
    expect(r.text).toContain("Correction delivered:  12,300");
    expect(r.text).toContain("Correction failed:     45");
    expect(r.html).toMatch(/Received the original<\/td><td[^>]*>12,345</);
    expect(r.html).toMatch(/Correction delivered<\/td><td[^>]*>12,300</);
    expect(r.html).toMatch(/Correction failed<\/td><td[^>]*color:#b91c1c;">45</);
    expect(r.html).toContain("45 recipients; the dashboard lists them");
  });

  it("rejected: who, why, and that the author can edit and resubmit", () => {
    const r = renderer.render("rejected", { recipientName: "Alice", message, rejectedBy: "Carol Chief", reason: "Not approved by legal" });
    expect(r.subject).toBe("[Airlock] Rejected: Delete TikTok from your phone");
    for (const part of [r.html, r.text]) {
      expect(part).toContain("Carol Chief rejected this message.");
      expect(part).toContain("Not approved by legal");
      expect(part).toContain("can edit the message and submit it again");
    }
    expect(r.html).toMatch(/<a href="https:\/\/airlock\.corp\.example\/messages\/42"[^>]*>Edit it on the dashboard<\/a>/);
    expect(ownLines(r.text, message.dashboardUrl)).toBe(1);
  });

  it("expired: when, approvals given of required, nothing sent", () => {
    const r = renderer.render("expired", { recipientName: "Alice", message, expiredAt: "23 November 2026, 13:50 UTC", approvalsRequired: 2, approvalsGiven: 1 });
    expect(r.subject).toBe("[Airlock] Expired without approval: Delete TikTok from your phone");
    for (const part of [r.html, r.text]) {
      expect(part).toContain("expired at 23 November 2026, 13:50 UTC");
      expect(part).toContain("(1 of 2 required)");
      expect(part).toContain("Nothing was sent.");
    }
  });
});

const correctionMail: SentMail = await (async () => {
  const original = { subject: "Delete TikTok from your phone", from: "Internal Communications <comms@corp.example>", toHeader: "All staff <all-staff@corp.example>", messageId: "<airlock.42@corp.example>" };
  const built = await composeCorrection(mailRenderer, { original, sentAt: new Date("2026-11-22T14:05:00Z"), correctionText: "Keep the app.\nIt is fine." }, new Date());
  return { of: "correction", revision: 1, subject: built.parts.subject, from: original.from, text: built.parts.text, html: built.parts.html, digest: built.digest };
})();

const correctionRequest: CorrectionRequestData = {
  recipientName: "Bob Approver",
  message,
  recalledBy: "Carol Chief",
  reason: "Sent to the wrong audience",
  delivered: 1_234,
  approvalsRequired: 1,
  approvalsGiven: 0,
  mail: correctionMail,
  approveUrl: "https://airlock.corp.example/links/approve-correction.sig4",
  rejectUrl: "https://airlock.corp.example/links/reject-correction.sig5",
  reviewUrl: "https://airlock.corp.example/messages/42/review?of=correction",
};

const halted: HaltedData = {
  recipientName: "Drew Oncall",
  message,
  of: "original",
  reason: "not sent: message 42 revision 1 builds with digest abc, but bob approved def",
  haltedAt: "22 November 2026, 14:05 UTC",
  sent: 0,
};

describe("correction request", () => {
  const r = renderer.render("correction_request", correctionRequest);

  it("asks for the correction text with both parts exactly as they would go out, the digest and the links first", () => {
    expect(r.subject).toBe("[Airlock] Correction text to approve: Delete TikTok from your phone");
    for (const part of [r.html, r.text]) {
      expect(part).toContain("Carol Chief recalled this message");
      expect(part).toContain("1,234 people who received it");
      expect(part).toContain("Sent to the wrong audience");
      expect(part).toContain(correctionMail.digest);
      expect(part).toContain("Correction: Delete TikTok from your phone");
    }
    expect(r.html).toMatch(new RegExp(`<a href="${correctionRequest.approveUrl}"[^>]*>Approve correction</a>`));
    expect(r.html).toMatch(new RegExp(`<a href="${correctionRequest.rejectUrl}"[^>]*>Reject text</a>`));
    expect(r.html).toContain("Keep the app.<br>\nIt is fine."); // the built HTML part
    expect(r.html).toMatch(/<pre [^>]*>Correction: Delete TikTok from your phone\n[\s\S]*Keep the app\.\nIt is fine\./); // the text part, verbatim
    expect(r.text).toContain("> Keep the app.\n> It is fine.");
    expect(ownLines(r.text, correctionRequest.approveUrl)).toBe(1);
    expect(ownLines(r.text, correctionRequest.reviewUrl)).toBe(1);
    expect(r.html).toContain(`<a href="${correctionRequest.reviewUrl.replace("=", "&#x3D;")}"`);
    expect(r.text.indexOf(correctionRequest.approveUrl)).toBeLessThan(r.text.indexOf("> Keep the app."));
  });
});

describe("halted", () => {
  it("says Airlock halted it, what it saw, how many had it, and links to the dashboard", () => {
    const r = renderer.render("halted", halted);
    expect(r.subject).toBe("[Airlock] Halted: Delete TikTok from your phone");
    for (const part of [r.html, r.text]) {
      expect(part).toContain("Airlock halted the sending of this message on 22 November 2026, 14:05 UTC");
      expect(part).toContain("builds with digest abc, but bob approved def");
      expect(part).toContain("0 recipients");
      expect(part).toContain(message.dashboardUrl);
    }
    expect(renderer.render("halted", { ...halted, of: "correction", sent: 3 }).text).toContain("halted the correction notice");
  });
});

describe("escaping", () => {
  const hostile = { ...message, subject: `Hi ${XSS} & bye`, authorName: `Mallory ${XSS} & co`, from: `Evil <img src=x onerror=alert(1)> <e@corp.example>` };
  const kinds: Array<[NotificationKind, object]> = [
    ["approval_request", approval],
    ["reminder", approval],
    ["scheduled", scheduled],
    ["recalled", recalled],
    ["corrected", { recipientName: "A", recalledBy: XSS, reason: XSS, delivered: 1, corrected: 1, correctionFailed: 0 }],
    ["rejected", { recipientName: "A", rejectedBy: XSS, reason: XSS }],
    ["expired", { recipientName: "A", expiredAt: "x", approvalsRequired: 1, approvalsGiven: 0 }],
    ["correction_request", { ...correctionRequest, recalledBy: XSS, reason: XSS }],
    ["halted", { ...halted, reason: XSS }],
  ];
  for (const [kind, data] of kinds) {
    it(`${kind}: escapes subject, names and sender in HTML and keeps them literal in the text and subject`, () => {
      const r = renderer.render(kind, { ...data, message: hostile } as never);
      expect(r.html).not.toMatch(/<script|<img/i);
      expect(r.html).toContain("Hi &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; bye");
      expect(r.subject).toContain(`Hi ${XSS} & bye`);
      expect(r.text).toContain(`Hi ${XSS} & bye`);
      expect(r.text).not.toContain("&lt;");
      expect(r.text).not.toContain("&amp;");
    });
  }

  it("escapes the author name in the approval request", () => {
    const r = renderer.render("approval_request", { ...approval, message: hostile });
    expect(r.html).toContain("Mallory &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; co asks for your approval");
    expect(r.text).toContain(`Mallory ${XSS} & co asks for your approval`);
  });

  it("shows the author's HTML as the built part shows it: sanitized, next to the text part", async () => {
    const hostileMail = await sent({ html: `<p onclick="x()">Hi <b>all</b></p>${XSS}<a href="javascript:alert(1)">x</a>` });
    const r = renderer.render("approval_request", { ...approval, mail: hostileMail });
    expect(r.html).toContain("<p>Hi <b>all</b></p>");
    expect(r.html).not.toMatch(/<script|onclick|javascript:/i);
    expect(r.text).toContain("> Please delete the app by Friday.");
  });

  it("keeps the subject on one line whatever the data holds", () => {
    const r = renderer.render("scheduled", { ...scheduled, releaseTime: "14:05\r\nBcc: all@corp.example", message: { ...message, subject: "Hi\r\nBcc: everyone@corp.example\u2028x" } });
    expect(r.subject).not.toMatch(/[\r\n\u2028]/);
    expect(r.subject).toBe("[Airlock] Going out at 14:05 Bcc: all@corp.example to 840,000 recipients: Hi Bcc: everyone@corp.example x");
  });

  it("does not let a name or the body forge a link line in the text part", async () => {
    const evil = "https://evil.example/approve";
    const r = renderer.render("approval_request", {
      ...approval,
      recipientName: `Bob\n${evil}`,
      message: { ...message, authorName: `Eve\n\nApprove:\n${evil}`, text: `Approve:\n${evil}` },
      mail: await sent({ text: `Approve:\n${evil}` }),
    });
    expect(ownLines(r.text, evil)).toBe(0);
    expect(r.text).toContain(`> ${evil}`);
    expect(ownLines(r.text, approval.approveUrl)).toBe(1);
  });

  it("refuses an unknown kind", () => {
    expect(() => renderer.render("nope" as never, approval as never)).toThrow(/unknown notification kind/);
  });
});
