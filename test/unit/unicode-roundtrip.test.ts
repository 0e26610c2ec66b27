/**
 * Fail at submit, never at release: arbitrary Unicode (every general category, lone surrogates,
 * U+2028/2029, bidi marks and overrides, very long words) in the subject, the sender's display
 * name and the bodies is either refused by the input rules, or built by the same function the
 * fan-out uses and read back by a real mail parser intact: the subject, the sender's name and
 * both parts exactly as the preview showed them.
 */
import fc from "fast-check";
import { simpleParser } from "mailparser";
import { describe, expect, it } from "vitest";
import { messageInput } from "../../src/domain/message-input.js";
import { formatMailbox, parseMailbox } from "../../src/domain/sender.js";
import { composeCorrection, composeOriginal } from "../../src/mail/compose.js";
import { createRenderer, templatesDir } from "../../src/mail/render.js";

const renderer = createRenderer(templatesDir());

/** Characters a hand-written test would forget. */
const tricky = fc.constantFrom(
  "\u2028", "\u2029", "\ud800", "\udfff", "\u200e", "\u200f", "\u202e", "\u2066", "\u0000", "\u0085", "\u00ad", "\ufeff",
  "\ufffe", "\uffff", "\ufdd0", "\u{1f4a9}", "\u{10ffff}", "\u0301", "é", "ß", "İ", "ﬁ", "שלום", "مرحبا", "日本語", "=?utf-8?q?x?=", '"', "\\", "<", ">", "&", "\t", "\r\n", "\n",
);
const piece = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary", maxLength: 12 }) },
  { weight: 3, arbitrary: tricky },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme-ascii", minLength: 200, maxLength: 1200 }).map((s) => s.replace(/\s/g, "x")) }, // a very long word
);
const text = fc.array(piece, { minLength: 1, maxLength: 8 }).map((p) => p.join(""));

const mailbox = { address: "comms@corp.example" };

describe("arbitrary Unicode: refused at submit, or delivered intact", () => {
  it("subject and bodies", async () => {
    let accepted = 0;
    let refused = 0;
    await fc.assert(
      fc.asyncProperty(text, text, fc.option(text, { nil: undefined }), async (subject, body, html) => {
        const input = messageInput.safeParse({ subject, text: body, ...(html === undefined ? {} : { html }), audience: { addresses: ["a@corp.example"] } });
        if (!input.success) {
          refused++;
          return;
        }
        accepted++;
        const m = {
          subject: input.data.subject,
          text: input.data.text ?? "",
          html: input.data.html ?? null,
          markdown: "",
          template: "",
          from: "Internal Communications <comms@corp.example>",
          toHeader: '"All staff" <all-staff@corp.example>',
          messageId: "<airlock.1.0011223344556677@corp.example>",
        };
        const built = await composeOriginal(renderer, m, new Date("2026-12-01T10:00:00Z"));
        const parsed = await simpleParser(built.raw);
        expect(parsed.subject).toBe(m.subject);
        expect(normalizeNewlines(parsed.text ?? "")).toBe(normalizeNewlines(built.parts.text));
        expect(normalizeNewlines(String(parsed.html))).toBe(normalizeNewlines(built.parts.html));
        // Its correction too (its subject is built from the original's).
        const correction = await composeCorrection(renderer, { original: m, sentAt: null, correctionText: null }, new Date());
        expect((await simpleParser(correction.raw)).subject).toBe(`Correction: ${m.subject}`);
      }),
      { numRuns: 300, seed: 1201 },
    );
    // The property ran both ways: some inputs were refused, some went through intact.
    expect(refused).toBeGreaterThan(20);
    expect(accepted).toBeGreaterThan(20);
  });

  it("a configured sender's display name", async () => {
    await fc.assert(
      fc.asyncProperty(text, async (name) => {
        const parsed = parseMailbox(formatMailbox({ name: name.trim(), address: mailbox.address }));
        if (!parsed.ok) return; // refused when the configuration is loaded (config.ts, users.ts)
        const m = { subject: "Hello", text: "Body", html: null, markdown: "", template: "", from: formatMailbox(parsed.mailbox), toHeader: "Undisclosed recipients:;", messageId: "<airlock.2.00@corp.example>" };
        const built = await composeOriginal(renderer, m, new Date());
        const from = (await simpleParser(built.raw)).from?.value ?? [];
        expect(from).toEqual([{ address: mailbox.address, name: parsed.mailbox.name }]);
      }),
      { numRuns: 200, seed: 1202 },
    );
  });
});

/** MIME carries CRLF; the parts were rendered with LF. Only the line ending may differ. */
function normalizeNewlines(s: string): string {
  return s.replace(/\r\n/g, "\n").replace(/\n+$/, "");
}
