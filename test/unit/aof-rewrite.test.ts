/** infra/aof-rewrite.ts: Redis's own rewrite rule, applied only while Redis is quiet (with a backstop). */
import { describe, expect, it } from "vitest";
import { BACKSTOP, aofDecision, parseAofState, type AofState } from "../../src/infra/aof-rewrite.js";

const rule = { percentage: 100, minSize: 64 << 20 };
const MB = 1 << 20;
const state = (currentSize: number, baseSize: number, more: Partial<AofState> = {}): AofState => ({ enabled: true, busy: false, currentSize, baseSize, ...more });

describe("aofDecision", () => {
  it("is not due below Redis's growth or minimum size, quiet or not", () => {
    for (const quiet of [false, true]) {
      expect(aofDecision(state(150 * MB, 100 * MB), rule, quiet)).toBe("not-due"); // 50% growth
      expect(aofDecision(state(199 * MB, 100 * MB), rule, quiet)).toBe("not-due"); // 99%
      expect(aofDecision(state(60 * MB, 10 * MB), rule, quiet)).toBe("not-due"); // 500%, below 64 MB
    }
  });

  it("rewrites when due and Redis is quiet, waits while it is not", () => {
    expect(aofDecision(state(200 * MB, 100 * MB), rule, true)).toBe("rewrite"); // exactly 100%
    expect(aofDecision(state(200 * MB, 100 * MB), rule, false)).toBe("wait");
    expect(aofDecision(state(499 * MB, 100 * MB), rule, false)).toBe("wait"); // 399%
  });

  it("rewrites while busy once the file grew BACKSTOP times the rule's percentage", () => {
    expect(BACKSTOP).toBe(4);
    expect(aofDecision(state(500 * MB, 100 * MB), rule, false)).toBe("rewrite-while-busy"); // 400%
    expect(aofDecision(state(300 * MB, 100 * MB), { percentage: 50, minSize: 0 }, false)).toBe("rewrite-while-busy"); // 200% = 4 x 50%
    expect(aofDecision(state(250 * MB, 100 * MB), { percentage: 50, minSize: 0 }, false)).toBe("wait");
  });

  it("counts a missing base as one byte, as Redis does", () => {
    expect(aofDecision(state(65 * MB, 0), rule, true)).toBe("rewrite");
    expect(aofDecision(state(65 * MB, 0), rule, false)).toBe("rewrite-while-busy");
  });

  it("never starts one while one runs, without an AOF, or with no rule", () => {
    expect(aofDecision(state(900 * MB, 100 * MB, { busy: true }), rule, true)).toBe("not-due");
    expect(aofDecision(state(900 * MB, 100 * MB, { enabled: false }), rule, true)).toBe("not-due");
    expect(aofDecision(state(900 * MB, 100 * MB), { percentage: 0, minSize: 0 }, true)).toBe("not-due");
  });
});

describe("parseAofState", () => {
  it("reads INFO persistence", () => {
    const info = "# Persistence\r\nloading:0\r\naof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:0\r\naof_current_size:5000\r\naof_base_size:1200\r\n";
    expect(parseAofState(info)).toEqual({ enabled: true, busy: false, currentSize: 5000, baseSize: 1200 });
  });

  it("a rewrite in progress or scheduled is busy; no AOF fields is no AOF", () => {
    expect(parseAofState("aof_enabled:1\r\naof_rewrite_in_progress:1\r\naof_rewrite_scheduled:0\r\n").busy).toBe(true);
    expect(parseAofState("aof_enabled:1\r\naof_rewrite_in_progress:0\r\naof_rewrite_scheduled:1\r\n").busy).toBe(true);
    expect(parseAofState("aof_enabled:0\r\n")).toEqual({ enabled: false, busy: false, currentSize: 0, baseSize: 0 });
  });
});
