import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { DIAGRAM_BEGIN, DIAGRAM_END, lifecycleSection } from "../../src/domain/lifecycle-diagram.js";
import { allTransitions } from "../../src/domain/lifecycle.js";

describe("the lifecycle diagram in docs/architecture.md", () => {
  it("is the one generated from the table (npm run docs:lifecycle rewrites it)", () => {
    const doc = readFileSync(new URL("../../docs/architecture.md", import.meta.url), "utf8");
    const start = doc.indexOf(DIAGRAM_BEGIN);
    const end = doc.indexOf(DIAGRAM_END);
    expect(start).toBeGreaterThanOrEqual(0);
    expect(doc.slice(start, end + DIAGRAM_END.length)).toBe(lifecycleSection());
  });

  it("draws every transition of the table", () => {
    const section = lifecycleSection();
    for (const { action, from, to } of allTransitions()) {
      const arrow = section.split("\n").find((l) => l.trim().startsWith(`${from === "new" ? "[*]" : from} --> ${to}:`));
      expect(arrow, `${action}: ${from} -> ${to}`).toMatch(new RegExp(`[:,] ${action}\\*?(,|$)`));
    }
  });
});
