/**
 * Drafts (SPEC lifecycle `draft`): saved incomplete by their author, seen by the author, ops and
 * admins only, nobody asked to approve them; edited as new revisions; submitted at the revision the
 * author saw (409 with the current one otherwise); discarded. Real service, Redis and SMTP sink.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
beforeAll(async () => {
  a = await startAirlock();
});
afterAll(async () => a?.stop());

/** Every mail (notifications included) whose subject names `subject`. */
const mailsAbout = (subject: string) => a.sink.received.filter((r) => r.mail.subject?.includes(subject));

describe("drafts", () => {
  it("saves an incomplete draft, visible to its author, ops and admins only, and asks nobody", async () => {
    const r = await a.call("author", "POST", "/api/messages", { draft: true, subject: "Half written" });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ state: "draft", revision: 1, subject: "Half written", author: "author@corp.example", recipientCount: 0 });
    const id = r.body.id as string;
    for (const who of ["author", "ops", "admin"] as const) expect((await a.call(who, "GET", `/api/messages/${id}`)).status, who).toBe(200);
    for (const who of ["author2", "approver1"] as const) expect((await a.call(who, "GET", `/api/messages/${id}`)).status, who).toBe(404);
    expect((await a.call("author2", "PUT", `/api/messages/${id}`, { subject: "Mine now" })).status).toBe(404);
    // Only with state=draft, and only one's own (or everything, for ops).
    expect((await a.call("author", "GET", "/api/messages?limit=200")).body.items.map((m: { id: string }) => m.id)).not.toContain(id);
    expect((await a.call("author", "GET", "/api/messages?state=draft")).body.items.map((m: { id: string }) => m.id)).toContain(id);
    expect((await a.call("author2", "GET", "/api/messages?state=draft")).body.items.map((m: { id: string }) => m.id)).not.toContain(id);
    expect((await a.call("ops", "GET", "/api/messages?state=draft")).body.items.map((m: { id: string }) => m.id)).toContain(id);
    // For an approver the draft does not exist.
    expect((await a.call("approver1", "POST", `/api/messages/${id}/approve`, { revision: 1 })).status).toBe(404);
    // A field that is given must be valid, even in a draft.
    expect((await a.call("author", "PUT", `/api/messages/${id}`, { subject: "x\u2028y" })).status).toBe(400);
    expect(mailsAbout("Half written")).toHaveLength(0);
  });

  it("refuses to submit an incomplete draft, naming what is missing, and changes nothing", async () => {
    const id = (await a.call("author", "POST", "/api/messages", { draft: true, subject: "No audience yet", text: "Hello" })).body.id;
    const r = await a.call("author", "POST", `/api/messages/${id}/submit`, {});
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body.error.details)).toContain("audience");
    expect((await a.call("author", "GET", `/api/messages/${id}`)).body).toMatchObject({ state: "draft", revision: 1 });
  });

  it("edits a draft as new revisions, submits the revision its author saw, and 409s a stale one", async () => {
    const id = (await a.call("author", "POST", "/api/messages", { draft: true, subject: "Town hall", text: "Friday" })).body.id;
    const saved = await a.call("author", "PUT", `/api/messages/${id}`, { subject: "Town hall", text: "Friday at 10", audience: { addresses: ["ann@corp.example"] } });
    expect(saved.body).toMatchObject({ state: "draft", revision: 2 });
    const stale = await a.call("author", "POST", `/api/messages/${id}/submit`, { revision: 1 });
    expect(stale.status).toBe(409);
    expect(stale.body.error.details).toMatchObject({ revision: 2 });
    expect((await a.call("author2", "POST", `/api/messages/${id}/submit`, {})).status).toBe(404);
    const submitted = await a.call("author", "POST", `/api/messages/${id}/submit`, { revision: 2 });
    expect(submitted.status).toBe(200);
    expect(submitted.body).toMatchObject({ state: "pending_approval", revision: 2, recipientCount: 1, text: "Friday at 10" });
    expect(submitted.body.digest).toMatch(/^[0-9a-f]{64}$/);
    expect((await a.call("approver1", "GET", `/api/messages/${id}`)).status).toBe(200);
    // Now, and only now, approvers are asked.
    await a.until("approval request", async () => mailsAbout("Town hall").some((r) => r.to.includes("approver1@corp.example")));
    expect((await a.call("author", "POST", `/api/messages/${id}/submit`, {})).status).toBe(409);
    expect((await a.call("approver1", "POST", `/api/messages/${id}/approve`, { revision: 2, digest: submitted.body.digest })).body.state).toBe("scheduled");
    const events = (await a.call("ops", "GET", `/api/messages/${id}/events`)).body.items.map((e: { action: string; from: string; to: string }) => `${e.action} ${e.from}->${e.to}`);
    expect(events.filter((e: string) => !e.startsWith("notify"))).toEqual(["saveDraft new->draft", "saveDraft draft->draft", "submit draft->pending_approval", "approve pending_approval->scheduled"]);
  });

  it("discards a draft (its author only); it is gone, its audit trail stays; a submitted message cannot be discarded", async () => {
    const id = (await a.call("author", "POST", "/api/messages", { draft: true, subject: "Never mind" })).body.id;
    expect((await a.call("author2", "DELETE", `/api/messages/${id}`)).status).toBe(404);
    expect((await a.call("ops", "DELETE", `/api/messages/${id}`)).status).toBe(403);
    expect((await a.call("author", "DELETE", `/api/messages/${id}`)).status).toBe(204);
    expect((await a.call("author", "GET", `/api/messages/${id}`)).status).toBe(404);
    expect((await a.call("ops", "GET", "/api/messages?state=draft")).body.items.map((m: { id: string }) => m.id)).not.toContain(id);
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Submitted", text: "x", audience: { addresses: ["ann@corp.example"] } })).body;
    expect((await a.call("author", "DELETE", `/api/messages/${m.id}`)).status).toBe(409);
  });
});
