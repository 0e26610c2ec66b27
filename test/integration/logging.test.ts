/**
 * Operators search logs by message: every committed action and every step a worker takes on a
 * message is one JSON line carrying the message id and its revision.
 */
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

const lines: Array<Record<string, unknown>> = [];
let a: TestAirlock;

beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString("utf8").split("\n")) if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  a = await startAirlock({ HOLD_MIN_SECONDS: "1" }, { logger: pino({ level: "info" }, sink) });
});
afterAll(async () => {
  await a?.stop();
});

it("logs each action and worker step as JSON with the message id and revision", async () => {
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Logged", text: "x", audience: { addresses: ["p@corp.example"] } })).body;
  expect((await a.call("author", "PUT", `/api/messages/${m.id}`, { subject: "Logged", text: "y", audience: { addresses: ["p@corp.example"] } })).status).toBe(200);
  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 2 })).status).toBe(200);
  await a.until("sent", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "sent");
  expect((await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "test" })).status).toBe(200);
  await a.until("corrected", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "corrected");

  const mine = lines.filter((l) => l.message === m.id);
  const actions = mine.filter((l) => l.action).map((l) => [l.action, l.revision, l.actor, l.state]);
  expect(actions).toEqual([
    ["submit", 1, "author@corp.example", "pending_approval"],
    ["edit", 2, "author@corp.example", "pending_approval"],
    ["approve", 2, "approver1@corp.example", "scheduled"],
    ["recall", 2, "ops@corp.example", "correcting"],
  ]);
  // The workers' and the notifier's lines name the message and revision too.
  expect(mine.some((l) => String(l.msg).includes("scheduled -> sending") && l.revision === 2)).toBe(true);
  expect(mine.some((l) => String(l.msg).includes("notification(s) queued") && l.revision === 1)).toBe(true);
  for (const l of mine) {
    expect(l.revision, JSON.stringify(l)).toEqual(expect.any(Number));
    expect(typeof l.time).toBe("number");
    expect(typeof l.level).toBe("number");
  }
});
