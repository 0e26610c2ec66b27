import { simpleParser } from "mailparser";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { classifyReply, replyExcerpt } from "../../src/inbound/auto-reply.js";

const parse = (headers: string[], body = "Thanks.") => simpleParser(Buffer.from([...headers, "", body].join("\r\n")));
const HUMAN = ["From: Alice Example <alice@corp.example>", "To: reply+42.w1.abcdefghijklm@bounces.corp.example", "Subject: Re: Changes to the holiday calendar", "Message-ID: <h1@corp.example>", "In-Reply-To: <airlock.42.0f1e2d3c4b5a6978@corp.example>"];

describe("classifyReply", () => {
  it("takes a plain reply from a person as human", async () => {
    expect(classifyReply(await parse(HUMAN), "alice@corp.example")).toEqual({ automatic: false, reasons: [] });
    // Auto-Submitted: no is RFC 3834's "a person sent this".
    expect(classifyReply(await parse([...HUMAN, "Auto-Submitted: no"]), "alice@corp.example").automatic).toBe(false);
    // A person's reply about an out-of-office policy is not an out-of-office reply.
    expect(classifyReply(await parse(["From: b@corp.example", "Subject: Re: New out-of-office policy"]), "b@corp.example").automatic).toBe(false);
    expect(classifyReply(await parse(["From: b@corp.example", "Subject: Re: Absence rules"]), "b@corp.example").automatic).toBe(false);
  });

  it.each([
    ["Auto-Submitted: auto-replied", ["Auto-Submitted: auto-replied"]],
    ["Auto-Submitted: auto-generated (with a comment)", ["Auto-Submitted: auto-generated; owner-email=\"x@y\""]],
    ["X-Autoreply", ["X-Autoreply: yes"]],
    ["X-Autorespond", ["X-Autorespond: on"]],
    ["Precedence: auto_reply", ["Precedence: auto_reply"]],
    ["Precedence: bulk", ["Precedence: bulk"]],
    ["Precedence: junk", ["Precedence: Junk"]],
    ["Precedence: list", ["Precedence: list"]],
    ["X-Auto-Response-Suppress", ["X-Auto-Response-Suppress: All"]],
    ["List-Id", ["List-Id: <staff.lists.corp.example>"]],
    ["List-Unsubscribe", ["List-Unsubscribe: <mailto:leave@lists.corp.example>"]],
    ["Return-Path: <>", ["Return-Path: <>"]],
    ["multipart/report", ["MIME-Version: 1.0", "Content-Type: multipart/report; report-type=disposition-notification; boundary=x"]],
  ])("marks %s automatic", async (_name, extra) => {
    const v = classifyReply(await parse([...HUMAN, ...extra]), "alice@corp.example");
    expect(v.automatic).toBe(true);
    expect(v.reasons.length).toBe(1);
  });

  it("marks a null return path and the mail system automatic", async () => {
    expect(classifyReply(await parse(HUMAN), "").reasons).toEqual(["null return path (MAIL FROM:<>)"]);
    expect(classifyReply(await parse(HUMAN), "MAILER-DAEMON@mx.example").automatic).toBe(true);
  });

  it.each([
    "Automatic reply: Changes to the holiday calendar",
    "[EXTERNAL] Automatic reply: Changes to the holiday calendar",
    "Out of Office: Changes to the holiday calendar",
    "Out of Office AutoReply: Changes to the holiday calendar",
    "Abwesenheitsnotiz: Änderungen am Feiertagskalender",
    "Automatische Antwort: Änderungen am Feiertagskalender",
    "Réponse automatique : Modification du calendrier",
    "Fuera de la oficina: Cambios en el calendario",
    "Respuesta automática: Cambios en el calendario",
    "Risposta automatica: Modifiche al calendario",
    "Automatisch antwoord: Wijzigingen",
    "=?UTF-8?B?6Ieq5Yqo5Zue5aSNOiBIb2xpZGF5IGNhbGVuZGFy?=", // 自动回复: Holiday calendar (RFC 2047 encoded)
    "Out of office",
  ])("takes the subject %j as out of office", async (subject) => {
    const v = classifyReply(await parse(["From: b@corp.example", `Subject: ${subject}`]), "b@corp.example");
    expect(v.automatic).toBe(true);
    expect(v.reasons[0]).toMatch(/^out-of-office subject/);
  });

  it("reads an Exchange out-of-office reply as Exchange sends it", async () => {
    // Shape of an Exchange Online OOF: "Automatic reply:" subject, Auto-Submitted, Inbox-Rules-Loop, Auto-Response-Suppress.
    const mail = await parse([
      "From: Jane Doe <jane.doe@contoso.com>",
      "To: reply+42.w1.abcdefghijklm@bounces.corp.example",
      "Subject: Automatic reply: Changes to the holiday calendar",
      "Auto-Submitted: auto-generated",
      "X-MS-Exchange-Inbox-Rules-Loop: jane.doe@contoso.com",
      "X-Auto-Response-Suppress: All",
      "Content-Type: text/plain; charset=us-ascii",
    ], "I am out of the office until Monday.");
    const v = classifyReply(mail, "jane.doe@contoso.com");
    expect(v.automatic).toBe(true);
    expect(v.reasons).toHaveLength(4);
  });

  it("never throws on odd headers", async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 200 }), fc.string({ maxLength: 200 }), async (subject, auto) => {
        const clean = (s: string) => s.replace(/[\r\n]/g, " ");
        const mail = await parse([`Subject: ${clean(subject)}`, `Auto-Submitted: ${clean(auto)}`]);
        classifyReply(mail, subject);
      }),
      { numRuns: 50 },
    );
    expect(classifyReply({ headerLines: [], subject: undefined }).automatic).toBe(false);
  });
});

describe("replyExcerpt", () => {
  it("keeps the answer above an Apple/Gmail attribution, wrapped over two lines", () => {
    const text = [
      "This went to the whole company, is that intended?",
      "The date in the second paragraph is wrong.",
      "",
      "On Tue, 1 Dec 2026 at 10:02, Internal Communications <",
      "comms@corp.example> wrote:",
      "> The holiday calendar for next year is attached.",
    ].join("\n");
    expect(replyExcerpt({ text })).toBe("This went to the whole company, is that intended?\nThe date in the second paragraph is wrong.");
  });

  it("stops at Outlook's quote header, in English and German", () => {
    const en = "Please recall this.\n\n________________________________\nFrom: Internal Communications <comms@corp.example>\nSent: Tuesday, December 1, 2026 10:02 AM\nTo: All employees\nSubject: Changes";
    expect(replyExcerpt({ text: en })).toBe("Please recall this.");
    const de = "Bitte zurückrufen.\r\n\r\nVon: Internal Communications <comms@corp.example>\r\nGesendet: Dienstag, 1. Dezember 2026 10:02\r\nAn: Alle";
    expect(replyExcerpt({ text: de })).toBe("Bitte zurückrufen.");
    const fr = "Erreur ?\n\nLe mar. 1 déc. 2026 à 10:02, Internal Communications <comms@corp.example> a écrit :\n> texte";
    expect(replyExcerpt({ text: fr })).toBe("Erreur ?");
    const orig = "Wrong audience.\n-----Original Message-----\nFrom: x";
    expect(replyExcerpt({ text: orig })).toBe("Wrong audience.");
  });

  it("skips quoted lines of a bottom-posted reply and drops the signature", () => {
    const text = "> The holiday calendar for next year is attached.\n>\nIt is not attached.\n\n-- \nAlice Example\nFinance";
    expect(replyExcerpt({ text })).toBe("It is not attached.");
  });

  it("keeps a line that merely starts with From: when no Sent: follows", () => {
    expect(replyExcerpt({ text: "From: my point of view this is wrong.\nPlease check." })).toBe("From: my point of view this is wrong.\nPlease check.");
  });

  it("is bounded in lines and characters, and free of control characters", () => {
    const text = Array.from({ length: 50 }, (_, i) => `line ${i}\u0007`).join("\n");
    const e = replyExcerpt({ text });
    expect(e.split("\n")).toHaveLength(8);
    expect(e).not.toMatch(/\u0007/);
    const long = replyExcerpt({ text: "x".repeat(10_000) }, { maxChars: 100 });
    expect(long.length).toBe(100);
    expect(long.endsWith("…")).toBe(true);
    expect(replyExcerpt({ text: undefined })).toBe("");
  });
});
