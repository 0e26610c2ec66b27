/** The compose form read with the API's schemas: drafts may be incomplete, every refusal is a sentence at its field. */
import { describe, expect, it } from "vitest";
import { blankValues, errorsFromDetails, parseCompose, sameValues, sendAtIso, valuesFromForm } from "../../src/http/dashboard/compose-form.js";

const typed = (over: Record<string, unknown> = {}) => valuesFromForm({ subject: "Hello", from: "comms@corp.example", markdown: "Hi **all**\r\n", lists: "team", addresses: "", holdMinutes: "", sendAt: "", ...over });

describe("compose form", () => {
  it("reads repeated lists, CRLF as LF, and keeps everything else as typed", () => {
    const v = valuesFromForm({ subject: " Hi ", lists: ["a", "b", "a", 7], addresses: "x@corp.example\r\ny@corp.example", markdown: "one\r\ntwo" });
    expect(v).toMatchObject({ subject: " Hi ", lists: ["a", "b"], addresses: "x@corp.example\ny@corp.example", markdown: "one\ntwo", template: "" });
  });

  it("saves an incomplete draft, and refuses the same form as a submission, field by field", () => {
    const draft = parseCompose({ ...blankValues(), subject: "Only a subject" }, { complete: false, holdMinSeconds: 900 });
    expect(draft).toEqual({ ok: true, input: { subject: "Only a subject", draft: true } });
    const submit = parseCompose({ ...blankValues(), subject: "Only a subject" }, { complete: true, holdMinSeconds: 900 });
    expect(submit).toEqual({ ok: false, errors: { markdown: "Write the message.", audience: "Choose at least one audience list, or type an address." } });
  });

  it("names a bad address, a hold under the minimum and a send time that is not one", () => {
    const r = parseCompose(typed({ addresses: "ok@corp.example\nbroken@", holdMinutes: "5", sendAt: "Friday" }), { complete: true, holdMinSeconds: 900 });
    expect(r.ok).toBe(false);
    const errors = (r as { errors: Record<string, string> }).errors;
    expect(errors.addresses).toMatch(/^“broken@” /);
    expect(errors.holdMinutes).toBe("The hold is at least 15 minutes.");
    expect(errors.sendAt).toContain("date and a time");
  });

  it("reads a datetime-local value as UTC and keeps an explicit offset", () => {
    expect(sendAtIso("2026-12-24T09:00")).toBe("2026-12-24T09:00:00.000Z");
    expect(sendAtIso("2026-12-24T09:00+01:00")).toBe("2026-12-24T08:00:00.000Z");
    expect(sendAtIso("2026-13-40T09:00")).toBeNull();
  });

  it("puts the service's refusals at their fields, and the rest in general", () => {
    const r = errorsFromDetails(
      [
        { path: ["body", "audience", "addresses", 1], message: "b@outside.example is outside the allowed recipient domains" },
        { path: ["audience", "lists"], message: "unknown audience gone" },
        { path: ["body"], message: "cannot be built" },
      ],
      ["a@corp.example", "b@outside.example"],
    );
    expect(r).toEqual({ errors: { addresses: "b@outside.example is outside the allowed recipient domains.", lists: "Unknown audience gone." }, general: ["cannot be built"] });
  });

  it("sees no change in addresses typed in another case or layout", () => {
    expect(sameValues(typed({ addresses: "A@corp.example, b@corp.example" }), typed({ addresses: "a@corp.example\nb@corp.example" }))).toBe(true);
    expect(sameValues(typed(), typed({ subject: "Hello!" }))).toBe(false);
  });
});
