import { describe, expect, it } from "vitest";
import { composeCorrection, composeOriginal } from "../../src/mail/compose.js";
import { createNotificationRenderer } from "../../src/mail/notifications.js";
import { createRenderer, templatesDir } from "../../src/mail/render.js";
import type { ApprovalRequestData, CorrectionRequestData, HaltedData, MessageSummary, NotificationKind, SentMail } from "../../src/notify/notification-data.js";
import type { Message, WaveProgress } from "../../src/domain/message.js";
import type { SignalEvidence } from "../../src/waves/signals.js";
import { HALT_EVIDENCE_SHOWN, haltSignals } from "../../workers/notify.js";

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
  signal: null,
};

/** A staged send halted in the wait after the canary by its third human reply. */
const waves: WaveProgress = {
  phase: "wait",
  seedAudience: null,
  seed: 4,
  canary: 18,
  rest: 839_978,
  canarySeed: "c0ffee",
  startedAt: { seed: "2026-11-22T13:50:00.000Z", canary: "2026-11-22T13:51:00.000Z", rest: null },
  waitUntil: "2026-11-22T14:01:00.000Z",
  handed: 22,
  signals: { failures: 1, bounces: 1, replies: 7, autoReplies: 2, reports: 1 },
  thresholds: { replies: 3, reports: 1, bouncePercent: 2, failurePercent: 2 },
  haltedBy: { kind: "reply", at: "2026-11-22T14:05:00.000Z", count: 3 },
};
const at = (minute: number) => new Date(Date.UTC(2026, 10, 22, 14, minute)).toISOString();
/** As the store answers it: newest first. */
const evidence: SignalEvidence[] = [
  { kind: "autoReply", at: at(9), from: "away@corp.example", excerpt: "I am out of the office." },
  { kind: "failure", at: at(8), index: 6, from: "full@corp.example", status: "552 5.2.2 mailbox\r\nfull" },
  { kind: "bounce", at: at(7), index: 5, from: "gone@corp.example", status: "5.1.1", diagnostic: "smtp; 550 5.1.1 user unknown" },
  { kind: "bounce", at: at(7), index: 9, status: "5.0.0" },
  { kind: "report", at: at(6), excerpt: "Wrong list & the wrong date" },
  ...[6, 5, 4, 3, 2, 1, 0].map((i): SignalEvidence => ({ kind: "reply", at: at(i), from: `person${i}@corp.example`, ...(i === 1 ? {} : { excerpt: `Is this meant for me?\nReply ${i}` }) })),
];
const signalHalt: HaltedData = {
  ...halted,
  reason: "signal: 3 human replies to the early waves",
  sent: 22,
  signal: haltSignals({ waves, counts: { sent: 21, inFlight: 1 } } as Pick<Message, "waves" | "counts">, "reply", evidence),
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

  it("a halt that is not a signal reads exactly as it always did", () => {
    const r = renderer.render("halted", halted);
    expect(r.text).toBe(
      [
        "[Airlock] Halted: Delete TikTok from your phone",
        "",
        "Hello Drew Oncall,",
        "",
        "Airlock halted the sending of this message on 22 November 2026, 14:05 UTC: what was about to go out is not exactly what was approved, or could not be built. Nothing more of it goes out until ops resume it (it is checked again) or someone recalls it.",
        "",
        "0 recipients had it when it halted.",
        "",
        "What Airlock saw:",
        "",
        "> not sent: message 42 revision 1 builds with digest abc, but bob approved def",
        "",
        "Subject:    Delete TikTok from your phone",
        "Sender:     Internal Communications <comms@corp.example>",
        "Author:     Alice Martin <alice@corp.example>",
        "Recipients: 840,000 recipients in total",
        "            all-staff: 812,345",
        "            contractors: 45,210",
        "            explicit addresses: 12",
        "",
        "Open it on the dashboard to recall it, or to resume it once the cause is found:",
        "https://airlock.corp.example/messages/42",
        "",
      ].join("\n"),
    );
    for (const part of [r.html, r.text]) expect(part).not.toMatch(/Signals so far|What to do|early waves|threshold/);
  });

  describe("by a signal of a staged send", () => {
    const r = renderer.render("halted", signalHalt);

    it("says the wave the send is in and the sizes of the waves", () => {
      expect(r.subject).toBe("[Airlock] Halted: Delete TikTok from your phone");
      for (const part of [r.html, r.text]) {
        expect(part).toContain("Airlock halted the sending of this message on 22 November 2026, 14:05 UTC");
        expect(part).toContain("its early waves showed a problem");
        expect(part).toContain("signal: 3 human replies to the early waves");
        expect(part).toMatch(/The send is in (<strong>)?the wait after the canary/);
        expect(part).toContain("seed cohort 4 recipients, canary 18 recipients, the rest 839,978 recipients (not started)");
        expect(part).not.toContain("not exactly what was approved");
      }
    });

    it("sets each count against its threshold and marks the one that halted the send", () => {
      expect(r.text).toContain(
        [
          "- Human replies: 7 (threshold 3) <- halted the send",
          "- Problem reports: 1 (threshold 1)",
          "- Bounces: 1 of 22 early recipients (threshold 2%)",
          "- Permanent SMTP failures: 1 of 22 early recipients (threshold 2%)",
          "- Automatic replies (out of office and the like): 2, not counted",
        ].join("\n"),
      );
      expect(r.html).toMatch(/Human replies<\/td><td[^>]*><strong[^>]*>7<\/strong> \(threshold 3\): <strong[^>]*>halted the send<\/strong>/);
      expect(r.html).toMatch(/Problem reports<\/td><td[^>]*>1 \(threshold 1\)<\/td>/);
      expect(r.html).toContain("1 of 22 early recipients (threshold 2%)");
      expect(r.html.match(/halted the send\b/g)).toHaveLength(1);
    });

    it("lists the evidence: the first replies with sender and excerpt, the reports' notes, the bounces, the failures", () => {
      expect(r.text).toContain(
        [
          "Human replies:",
          "- person0@corp.example, 22 November 2026, 14:00 UTC:",
          "> Is this meant for me?",
          "> Reply 0",
          "",
          "- person1@corp.example, 22 November 2026, 14:01 UTC (no text)",
          "",
          "- person2@corp.example, 22 November 2026, 14:02 UTC:",
        ].join("\n"),
      );
      expect(r.text).toContain("> Reply 4\n\nand 2 more: see the dashboard.");
      expect(r.text).not.toContain("person5@");
      expect(r.text).toContain("Problem reports:\n- 22 November 2026, 14:06 UTC:\n> Wrong list & the wrong date");
      expect(r.text).toContain("Bounces:\n- recipient #9, 22 November 2026, 14:07 UTC: 5.0.0\n- gone@corp.example, 22 November 2026, 14:07 UTC: 5.1.1 (smtp; 550 5.1.1 user unknown)");
      expect(r.text).toContain("Permanent SMTP failures:\n- full@corp.example, 22 November 2026, 14:08 UTC: 552 5.2.2 mailbox full");
      expect(r.text).not.toContain("I am out of the office"); // an automatic reply is counted apart, not evidence
      expect(r.html).toMatch(/person0@corp\.example, 22 November 2026, 14:00 UTC:<blockquote[^>]*>Is this meant for me\?\nReply 0<\/blockquote>/);
      expect(r.html).toContain("person1@corp.example, 22 November 2026, 14:01 UTC (no text)");
      expect(r.html).toContain("and 2 more: see the dashboard.");
      expect(r.html).toContain("Wrong list &amp; the wrong date");
      expect(r.html).toContain("gone@corp.example, 22 November 2026, 14:07 UTC: <strong>5.1.1</strong> (smtp; 550 5.1.1 user unknown)");
      expect(r.html).toContain("full@corp.example, 22 November 2026, 14:08 UTC: 552 5.2.2 mailbox full");
    });

    it("tells the reader what to do, with the dashboard link", () => {
      expect(r.text).toContain(
        "What to do: Continue (ops) starts the next wave now (the rest, or the canary if the seed cohort is still going); or recall it: the correction goes only to the 22 people who received it. Both are on the dashboard:\nhttps://airlock.corp.example/messages/42\n",
      );
      expect(ownLines(r.text, message.dashboardUrl)).toBe(1);
      expect(r.html).toContain("<strong>What to do:</strong> <strong>Continue</strong> (ops) starts the next wave now (the rest, or the canary if the seed cohort is still going); or <strong>recall</strong> it: the correction goes only to the 22 people who received it.");
      expect(r.html).toContain(`<a href="${message.dashboardUrl}" style="color:#1d4ed8;">Open it on the dashboard</a> to do either.`);
      const none = renderer.render("halted", { ...signalHalt, signal: { ...signalHalt.signal!, delivered: 0 } });
      for (const part of [none.html, none.text]) expect(part).toContain("it: nobody has received it, so nobody gets a correction.");
    });

    it("escapes what recipients wrote in HTML and quotes it in the text part, so nothing can pass for the notice", () => {
      const evil = "https://evil.example/continue";
      const hostile = haltSignals({ waves, counts: { sent: 22, inFlight: 0 } } as Pick<Message, "waves" | "counts">, "report", [
        { kind: "failure", at: at(5), from: `x@corp.example\n${evil}`, status: `550 ${XSS}\r\n${evil}` },
        { kind: "bounce", at: at(4), index: 1, from: `b@corp.example\u2028${evil}`, status: XSS, diagnostic: `${XSS}\n${evil}` },
        { kind: "report", at: at(3), excerpt: `${XSS}\n${evil}` },
        { kind: "reply", at: at(2), from: `Mallory ${XSS}\n${evil} <m@corp.example>`, excerpt: `Continue:\n${evil}\n${XSS} & more` },
      ]);
      const r = renderer.render("halted", { ...signalHalt, signal: hostile });
      expect(r.html).not.toMatch(/<script|<img/i);
      expect(r.html).toContain("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more");
      expect(r.html).not.toContain(`href="${evil}"`);
      expect(ownLines(r.text, evil)).toBe(0);
      expect(r.text).toContain(`> Continue:\n> ${evil}\n> ${XSS} & more`);
      expect(r.text).toContain(`- Mallory ${XSS} ${evil} <m@corp.example>, 22 November 2026, 14:02 UTC:`);
      expect(r.text).toContain(`- x@corp.example ${evil}, 22 November 2026, 14:05 UTC: 550 ${XSS} ${evil}`);
      expect(r.text).not.toContain("&lt;");
      expect(r.text).toContain("- Problem reports: 1 (threshold 1) <- halted the send");
    });
  });
});

describe("haltSignals (what the worker gives the halted mail)", () => {
  const data = haltSignals({ waves, counts: { sent: 21, inFlight: 1 } } as Pick<Message, "waves" | "counts">, "bounce", evidence)!;

  it("takes the counts, thresholds and wave sizes from the message, the early recipients as the halt counts them", () => {
    expect(data).toMatchObject({
      kind: "bounce",
      wave: "the wait after the canary",
      seed: 4,
      canary: 18,
      rest: 839_978,
      restStarted: false,
      early: 22,
      replies: { count: 7, threshold: 3, halted: false },
      reports: { count: 1, threshold: 1, halted: false },
      bounces: { count: 1, percent: 2, halted: true },
      failures: { count: 1, percent: 2, halted: false },
      autoReplies: 2,
      delivered: 22, // sent and in flight: a recall corrects both
    });
  });

  it("lists the earliest evidence of each kind first, a few at most, and counts the rest", () => {
    expect(data.replyEvidence.list.map((e) => e.from)).toEqual([0, 1, 2, 3, 4].map((i) => `person${i}@corp.example`));
    expect(data.replyEvidence.list).toHaveLength(HALT_EVIDENCE_SHOWN);
    expect(data.replyEvidence.more).toBe(2);
    expect(data.replyEvidence.list[1]).toEqual({ at: "22 November 2026, 14:01 UTC", from: "person1@corp.example", excerpt: "" });
    expect(data.reportEvidence).toEqual({ list: [{ at: "22 November 2026, 14:06 UTC", note: "Wrong list & the wrong date" }], more: 0 });
    // Two kept, one counted (the message is read before the evidence: a signal in between is kept, not yet counted): never a negative "more".
    expect(data.bounceEvidence.list.map((e) => e.recipient)).toEqual(["recipient #9", "gone@corp.example"]);
    expect(data.bounceEvidence.more).toBe(0);
    expect(data.failureEvidence.list).toEqual([{ at: "22 November 2026, 14:08 UTC", recipient: "full@corp.example", reply: "552 5.2.2 mailbox full" }]);
  });

  it("names each wave, and has nothing to say of a message that is not staged", () => {
    const phase = (p: WaveProgress["phase"]) => haltSignals({ waves: { ...waves, phase: p }, counts: { sent: 0, inFlight: 0 } } as Pick<Message, "waves" | "counts">, "reply", [])!;
    expect(phase("seed").wave).toBe("the seed wave");
    expect(phase("canary").wave).toBe("the canary wave");
    expect(phase("rest")).toMatchObject({ wave: "the rest, continued since the halt", restStarted: true });
    expect(phase("canary").replyEvidence).toEqual({ list: [], more: 7 });
    expect(haltSignals({ waves: null, counts: { sent: 0, inFlight: 0 } } as unknown as Pick<Message, "waves" | "counts">, "reply", evidence)).toBeNull();
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
    ["halted", { ...signalHalt, reason: XSS }],
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
