/**
 * What one author can make the API hold: revisions are capped (MAX_REVISIONS) and read a page at a
 * time, lists carry no bodies. The heap under a flood of large edits and uploads is in
 * test/faults/exhaustion.test.ts.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";
import { dashboardClient } from "../support/dashboard-client.js";

let a: TestAirlock;
const big = (tag: string) => `${tag} `.padEnd(200_000, "x");
const message = (subject: string, text = "Short.") => ({ subject, text, audience: { addresses: ["ann@corp.example"] } });

beforeAll(async () => {
  a = await startAirlock({ MAX_REVISIONS: "3", HOLD_MIN_SECONDS: "3600" });
});
afterAll(async () => a?.stop());

describe("MAX_REVISIONS", () => {
  it("refuses the edit past the cap with a 409 naming it, and changes nothing", async () => {
    const m = (await a.call("author", "POST", "/api/messages", message("Capped", big("r1")))).body;
    for (const r of [2, 3]) {
      const edited = await a.call("author", "PUT", `/api/messages/${m.id}`, message(`Capped ${r}`, big(`r${r}`)));
      expect(edited.status, JSON.stringify(edited.body)).toBe(200);
      expect(edited.body.revision).toBe(r);
    }
    const refused = await a.call("author", "PUT", `/api/messages/${m.id}`, message("Capped 4", big("r4")));
    expect(refused.status).toBe(409);
    expect(refused.body.error).toMatchObject({ code: "conflict", details: { maxRevisions: 3, revision: 3, state: "pending_approval" } });
    expect(refused.body.error.message).toMatch(/MAX_REVISIONS/);
    const after = (await a.call("ops", "GET", `/api/messages/${m.id}`)).body;
    expect(after).toMatchObject({ revision: 3, subject: "Capped 3" });
    // Still approvable: the cap stops edits, not the message.
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 3 })).status).toBe(200);
  });

  it("does not count draft saves, which keep no snapshot", async () => {
    const d = (await a.call("author", "POST", "/api/messages", { ...message("Draft saved often"), draft: true })).body;
    let revision = d.revision;
    for (let i = 0; i < 5; i++) {
      const saved = await a.call("author", "PUT", `/api/messages/${d.id}`, message(`Draft save ${i}`));
      expect(saved.status, JSON.stringify(saved.body)).toBe(200);
      revision = saved.body.revision;
    }
    expect((await a.call("author", "POST", `/api/messages/${d.id}/submit`, { revision })).status).toBe(200);
    expect((await a.call("author", "PUT", `/api/messages/${d.id}`, message("Edited once submitted"))).status).toBe(200);
  });
});

describe("reading revisions", () => {
  it("pages snapshots newest first, a few at a time", async () => {
    const m = (await a.call("author", "POST", "/api/messages", message("Paged v1"))).body;
    await a.call("author", "PUT", `/api/messages/${m.id}`, message("Paged v2"));
    await a.call("author", "PUT", `/api/messages/${m.id}`, message("Paged v3"));
    const first = (await a.call("ops", "GET", `/api/messages/${m.id}/revisions?limit=2`)).body;
    expect(first.items.map((s: { revision: number; subject: string }) => [s.revision, s.subject])).toEqual([
      [3, "Paged v3"],
      [2, "Paged v2"],
    ]);
    expect(first.nextCursor).toBe("2");
    const second = (await a.call("ops", "GET", `/api/messages/${m.id}/revisions?limit=2&cursor=${first.nextCursor}`)).body;
    expect(second).toEqual({ items: [expect.objectContaining({ revision: 1, subject: "Paged v1", text: "Short." })], nextCursor: null });
    expect((await a.call("ops", "GET", `/api/messages/${m.id}/revisions?limit=11`)).status).toBe(400);
    expect((await a.call("ops", "GET", `/api/messages/99999/revisions`)).status).toBe(404);
  });

  it("shows the newest revisions on the message page with what changed", async () => {
    const m = (await a.call("author", "POST", "/api/messages", message("Page v1"))).body;
    await a.call("author", "PUT", `/api/messages/${m.id}`, message("Page v2"));
    const page = await (await dashboardClient(() => a.url).signIn("ops")).get(`/messages/${m.id}`);
    expect(page.status).toBe(200);
    expect(page.html).toMatch(/Revision 2: Page v2[\s\S]*Revision 1: Page v1[\s\S]*The first revision\./);
    expect(page.html).not.toContain("Older revisions are not shown");
  });
});

describe("lists", () => {
  it("carry no bodies", async () => {
    await a.call("author", "POST", "/api/messages", message("Listed", big("body")));
    const list = (await a.call("ops", "GET", "/api/messages?limit=200")).body;
    const item = list.items.find((m: { subject: string }) => m.subject === "Listed");
    expect(item).toMatchObject({ subject: "Listed", state: "pending_approval", recipientCount: 1, counts: expect.any(Object) });
    for (const m of list.items) {
      expect(m).not.toHaveProperty("text");
      expect(m).not.toHaveProperty("html");
      expect(m).not.toHaveProperty("markdown");
    }
    expect(JSON.stringify(list).length).toBeLessThan(200_000);
    // The message itself still has its body.
    expect((await a.call("ops", "GET", `/api/messages/${item.id}`)).body.text).toHaveLength(200_000);
  });
});
