import { Backoffs } from "bullmq";
import { describe, expect, it } from "vitest";
import { classifySmtpError, SmtpSendError, type RecipientRejection, type SmtpErrorFields } from "../../src/mail/smtp-errors.js";
import { FANOUT_ATTEMPTS, fanoutBackoff, GAVE_UP, NOTIFY_ATTEMPTS, NOTIFY_BACKOFF, recipientOutcome, transactionOutcome, type SmtpOutcome } from "../../src/mail/smtp-outcome.js";

const rejection = (code: number | null, response: string, kind: RecipientRejection["kind"]): RecipientRejection => ({ address: "bob@corp.example", code, response, kind });

describe("recipientOutcome", () => {
  const cases: Array<[string, RecipientRejection | undefined, boolean, SmtpOutcome]> = [
    ["accepted", undefined, false, { type: "sent" }],
    ["accepted, last attempt", undefined, true, { type: "sent" }],
    ["5xx RCPT: failed at once", rejection(550, "5.1.1 no such user", "permanent"), false, { type: "failed", reply: "550 5.1.1 no such user" }],
    ["5xx RCPT, last attempt: the server's word, not a give-up", rejection(550, "5.1.1 no such user", "permanent"), true, { type: "failed", reply: "550 5.1.1 no such user" }],
    ["4xx RCPT (greylisting): retried", rejection(451, "4.7.1 try later", "temporary"), false, { type: "retry", reply: "451 4.7.1 try later", ambiguous: false }],
    ["4xx RCPT, last attempt: given up", rejection(452, "4.5.3 too many recipients", "temporary"), true, { type: "failed", reply: "gave up after the last attempt: 452 4.5.3 too many recipients" }],
    ["no reply code", rejection(null, "rejected", "permanent"), false, { type: "failed", reply: "rejected" }],
  ];
  it.each(cases)("%s", (_name, r, lastAttempt, expected) => {
    expect(recipientOutcome(r, lastAttempt)).toEqual(expected);
  });
});

describe("transactionOutcome", () => {
  // What nodemailer (or smtp-client.ts) throws, through the transport's classification, to the outcome.
  const error = (message: string, f: SmtpErrorFields, bodySent: boolean) => new SmtpSendError(classifySmtpError(Object.assign(new Error(message), f), bodySent), Object.assign(new Error(message), f));
  const cases: Array<[string, SmtpSendError, boolean, SmtpOutcome]> = [
    ["5xx to DATA: failed", error("554 5.7.1 spam", { code: "EMESSAGE", responseCode: 554, command: "DATA" }, true), false, { type: "failed", reply: "554 5.7.1 spam" }],
    ["5xx to MAIL FROM: failed", error("553 sender refused", { code: "EENVELOPE", responseCode: 553, command: "MAIL FROM" }, false), false, { type: "failed", reply: "553 sender refused" }],
    ["envelope refused locally: failed", error("No recipients defined", { code: "EENVELOPE", command: "API" }, false), false, { type: "failed", reply: "No recipients defined" }],
    ["4xx to DATA: retried", error("451 4.3.0 try again", { code: "EMESSAGE", responseCode: 451, command: "DATA" }, true), false, { type: "retry", reply: "451 4.3.0 try again", ambiguous: false }],
    ["5xx to AUTH (the session, not the message): retried", error("535 bad credentials", { code: "EAUTH", responseCode: 535, command: "AUTH PLAIN" }, false), false, { type: "retry", reply: "535 bad credentials", ambiguous: false }],
    ["connection lost before DATA: retried, nothing delivered", error("Connection closed", { code: "ECONNECTION", command: "CONN" }, false), false, { type: "retry", reply: "Connection closed", ambiguous: false }],
    ["connection lost after DATA: retried, ambiguous", error("Connection closed", { code: "ECONNECTION", command: "CONN" }, true), false, { type: "retry", reply: "Connection closed", ambiguous: true }],
    ["timeout after DATA: retried, ambiguous", error("Timeout", { code: "ETIMEDOUT", command: "CONN" }, true), false, { type: "retry", reply: "Timeout", ambiguous: true }],
    ["4xx, last attempt: given up", error("451 4.3.0 try again", { code: "EMESSAGE", responseCode: 451, command: "DATA" }, true), true, { type: "failed", reply: "gave up after the last attempt: 451 4.3.0 try again" }],
    ["connection lost after DATA, last attempt: given up", error("Connection closed", { code: "ECONNECTION", command: "CONN" }, true), true, { type: "failed", reply: "gave up after the last attempt: Connection closed" }],
    ["5xx, last attempt: the server's word, not a give-up", error("554 5.7.1 spam", { code: "EMESSAGE", responseCode: 554, command: "DATA" }, true), true, { type: "failed", reply: "554 5.7.1 spam" }],
  ];
  it.each(cases)("%s", (_name, err, lastAttempt, expected) => {
    expect(transactionOutcome(err, lastAttempt)).toEqual(expected);
  });

  it("cuts a long error message to 500 characters (before the give-up prefix)", () => {
    const long = new SmtpSendError("temporary", new Error("x".repeat(2000)));
    expect(transactionOutcome(long, false)).toEqual({ type: "retry", reply: "x".repeat(500), ambiguous: false });
    expect(transactionOutcome(long, true)).toEqual({ type: "failed", reply: GAVE_UP + "x".repeat(500) });
  });
});

describe("backoff", () => {
  const total = (delays: number[]) => delays.reduce((a, b) => a + b, 0);

  it("fan-out: doubles from 1 s, capped at 60 s, 12 attempts over about 6 minutes", () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 11].map(fanoutBackoff)).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    expect(fanoutBackoff(0)).toBe(1000);
    expect(FANOUT_ATTEMPTS).toBe(12);
    // A wait after every attempt but the last.
    const waits = Array.from({ length: FANOUT_ATTEMPTS - 1 }, (_, i) => fanoutBackoff(i + 1));
    expect(total(waits)).toBe(363_000);
  });

  it("notifications: BullMQ's exponential from 2 s, 8 attempts, the last about 4 minutes after the first", () => {
    expect(NOTIFY_ATTEMPTS).toBe(8);
    const options = Backoffs.normalize(NOTIFY_BACKOFF)!;
    const waits = Array.from({ length: NOTIFY_ATTEMPTS - 1 }, (_, i) => Backoffs.calculate(options, i + 1, new Error("451"), {} as never) as number);
    expect(waits).toEqual([2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000]);
    expect(total(waits)).toBe(254_000);
  });
});
