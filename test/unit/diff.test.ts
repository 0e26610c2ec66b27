import { describe, expect, it } from "vitest";
import { diffRevisions, MAX_DIFF_LINES, type RevisionSnapshot } from "../../src/notify/diff.js";

const base: RevisionSnapshot = {
  subject: "Delete TikTok from your phone",
  text: "Hello all,\n\nPlease delete the app.\n\nThanks",
  html: "",
  from: "Internal Communications <comms@corp.example>",
  audience: { lists: ["all-staff"], addresses: ["a@corp.example"] },
  recipientCount: 840_000,
};
const lines = (n: number, prefix = "line") => Array.from({ length: n }, (_, i) => `${prefix} ${i + 1}`);
const fieldsOf = (d: ReturnType<typeof diffRevisions>) => d.map((f) => f.field);
const total = (d: ReturnType<typeof diffRevisions>) => d.reduce((n, f) => n + f.lines.length, 0);

describe("diffRevisions", () => {
  it("is empty when nothing changed, including line endings and the stored-JSON audience form", () => {
    expect(diffRevisions(base, { ...base })).toEqual([]);
    const stored = { ...base, text: base.text.replace(/\n/g, "\r\n") + "\r\n", audience: JSON.stringify(base.audience) };
    expect(diffRevisions(base, stored)).toEqual([]);
  });

  it("shows a changed subject and sender as - old / + new, and omits unchanged fields", () => {
    const d = diffRevisions(base, { ...base, subject: "Keep TikTok", from: "HR <hr@corp.example>" });
    expect(d).toEqual([
      { field: "Subject", lines: [{ op: "-", text: "Delete TikTok from your phone" }, { op: "+", text: "Keep TikTok" }] },
      { field: "Sender", lines: [{ op: "-", text: base.from }, { op: "+", text: "HR <hr@corp.example>" }] },
    ]);
  });

  it("diffs the text line by line with the unchanged lines around the change", () => {
    const d = diffRevisions(base, { ...base, text: "Hello all,\n\nPlease keep the app.\n\nThanks" });
    expect(fieldsOf(d)).toEqual(["Text"]);
    expect(d[0]!.lines).toEqual([
      { op: " ", text: "Hello all," },
      { op: " ", text: "" },
      { op: "-", text: "Please delete the app." },
      { op: "+", text: "Please keep the app." },
      { op: " ", text: "" },
      { op: " ", text: "Thanks" },
    ]);
  });

  it("keeps 3 context lines and collapses longer unchanged runs into one … line", () => {
    const prev = lines(50);
    const cur = [...prev];
    cur[9] = "changed 10";
    cur[39] = "changed 40";
    const d = diffRevisions({ ...base, text: prev.join("\n") }, { ...base, text: cur.join("\n") });
    const text = d[0]!.lines.map((l) => `${l.op}${l.text}`);
    expect(text).toEqual([
      " …",
      " line 7", " line 8", " line 9",
      "-line 10", "+changed 10",
      " line 11", " line 12", " line 13",
      " …",
      " line 37", " line 38", " line 39",
      "-line 40", "+changed 40",
      " line 41", " line 42", " line 43",
      " …",
    ]);
  });

  it("diffs the HTML under its own field", () => {
    const d = diffRevisions({ ...base, html: "<p>Hi</p>\n<p>Bye</p>" }, { ...base, html: "<p>Hi</p>\n<p>See you</p>" });
    expect(fieldsOf(d)).toEqual(["HTML"]);
    expect(d[0]!.lines).toContainEqual({ op: "-", text: "<p>Bye</p>" });
    expect(d[0]!.lines).toContainEqual({ op: "+", text: "<p>See you</p>" });
  });

  it("diffs a Markdown body as its source, and names a changed house template", () => {
    const md = { ...base, text: "", markdown: "# Canteen\n\nClosed on **Friday**.", template: "announcement" };
    const d = diffRevisions(md, { ...md, markdown: "# Canteen\n\nClosed on **Monday**.", template: "policy-notice" });
    expect(fieldsOf(d)).toEqual(["Template", "Markdown"]);
    expect(d[0]!.lines).toEqual([{ op: "-", text: "announcement" }, { op: "+", text: "policy-notice" }]);
    expect(d[1]!.lines).toContainEqual({ op: "-", text: "Closed on **Friday**." });
    expect(d[1]!.lines).toContainEqual({ op: "+", text: "Closed on **Monday**." });
    // A snapshot from before Markdown (no such fields) reads as an empty source.
    expect(diffRevisions(base, { ...base })).toEqual([]);
  });

  it("names lists added and removed, counts explicit addresses, and shows the recipient count", () => {
    const d = diffRevisions(base, {
      ...base,
      audience: JSON.stringify({ lists: ["contractors"], addresses: ["a@corp.example", "b@corp.example", "c@corp.example"] }),
      recipientCount: 45_210,
    });
    expect(d).toEqual([
      {
        field: "Audience",
        lines: [
          { op: "-", text: "list all-staff" },
          { op: "+", text: "list contractors" },
          { op: "-", text: "1 explicit address" },
          { op: "+", text: "3 explicit addresses (2 added, 0 removed)" },
        ],
      },
      { field: "Recipients", lines: [{ op: "-", text: "840,000" }, { op: "+", text: "45,210" }] },
    ]);
  });

  it("does not list the explicit addresses themselves", () => {
    const d = diffRevisions(base, { ...base, audience: { lists: ["all-staff"], addresses: ["secret.person@corp.example"] } });
    expect(JSON.stringify(d)).not.toContain("secret.person");
    expect(d[0]!.lines).toContainEqual({ op: "+", text: "1 explicit address (1 added, 1 removed)" });
  });

  it("caps a huge edit at MAX_DIFF_LINES with a final count of what was left out", () => {
    const prev = { ...base, text: lines(1000, "old").join("\n") };
    const cur = { ...base, subject: "New subject", text: lines(1000, "new").join("\n"), html: "<p>x</p>" };
    const d = diffRevisions(prev, cur);
    expect(total(d)).toBe(MAX_DIFF_LINES);
    // Subject (2) + Text (2,000) + HTML (1) = 2,003 lines; 199 shown, the marker is the 200th.
    const last = d.at(-1)!.lines.at(-1)!;
    expect(last).toEqual({ op: " ", text: "… (1,804 more lines)" });
    // One-line fields come first, so the cap only ever shortens a body diff.
    expect(fieldsOf(d)).toEqual(["Subject", "Text"]);
    expect(d[0]!.lines).toHaveLength(2);
  });

  it("stays bounded and quick when both bodies are long and entirely different", () => {
    const prev = { ...base, text: lines(20_000, "a").join("\n") };
    const cur = { ...base, text: lines(20_000, "b").join("\n") };
    const t = Date.now();
    const d = diffRevisions(prev, cur);
    expect(Date.now() - t).toBeLessThan(3000);
    expect(total(d)).toBe(MAX_DIFF_LINES);
    expect(d[0]!.lines[0]).toEqual({ op: "-", text: "a 1" });
  });

  it("cuts very long lines", () => {
    const d = diffRevisions({ ...base, html: "<p>" + "x".repeat(10_000) }, { ...base, html: "<p>" + "y".repeat(10_000) });
    for (const l of d[0]!.lines) expect(l.text.length).toBeLessThanOrEqual(301);
    expect(d[0]!.lines[0]!.text.endsWith("…")).toBe(true);
  });

  it("tolerates a snapshot as stored by Lua (null html, empty array written as {})", () => {
    const stored = { ...base, html: null, audience: '{"lists":["all-staff"],"addresses":{}}' } as unknown as RevisionSnapshot;
    const d = diffRevisions(stored, { ...base, audience: { lists: ["all-staff"], addresses: [] } });
    expect(d).toEqual([]);
  });
});
