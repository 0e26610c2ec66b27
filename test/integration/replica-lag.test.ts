/**
 * REDIS_MIN_REPLICAS_ACK with replicas that do not confirm (here: none at all, so every WAIT times
 * out): decisions answer 503 `not_replicated`, yet they stand on the primary and what must follow
 * them is carried out — the approved message is released and sent, a recalled one's custom
 * correction text gets its digest (so it can be approved) and, approved, goes to everyone who got
 * the original. The failover itself is test/faults/failover.test.ts.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const team = ["ann@corp.example", "ben@corp.example", "cy@corp.example"];

beforeAll(async () => {
  a = await startAirlock({ REDIS_MIN_REPLICAS_ACK: "1", REDIS_REPLICA_ACK_TIMEOUT_MS: "50" });
});
afterAll(async () => a?.stop());

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;

it("answers 503 to decisions the replicas did not confirm, and still carries out what follows them", async () => {
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Lagging replicas", text: "Hello.", audience: { addresses: team } })).body;
  expect(m.state).toBe("pending_approval"); // a submit does not wait for replicas

  const approved = await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 });
  expect(approved.status).toBe(503);
  expect(approved.body.error).toMatchObject({ code: "not_replicated", details: { replicas: { acknowledged: 0, required: 1 } } });
  expect((await get(m.id)).approvals.map((x: { by: string }) => x.by)).toEqual(["approver1@corp.example"]);
  // The retry says it is done already.
  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).body.error.code).toBe("already_approved");
  await a.until("sent", async () => (await get(m.id)).state === "sent");

  const recalled = await a.call("author", "POST", `/api/messages/${m.id}/recall`, { reason: "oops", correctionText: "Please disregard the message above." });
  expect(recalled.status).toBe(503);
  const c = (await get(m.id)).correction;
  expect(c).toMatchObject({ status: "pending", text: "Please disregard the message above." });
  expect(c.digest).toMatch(/^[0-9a-f]{64}$/); // recorded although the recall's answer was a 503

  const decided = await a.call("approver1", "POST", `/api/messages/${m.id}/correction/approve`, { digest: c.digest });
  expect(decided.status).toBe(503);
  await a.until("corrected", async () => (await get(m.id)).state === "corrected");
  const corrections = a.sink.received.filter((r) => r.mail.inReplyTo === m.messageId);
  expect(corrections.flatMap((r) => r.to).sort()).toEqual([...team].sort());
  expect(corrections.every((r) => String(r.mail.text).includes("Please disregard the message above."))).toBe(true);
});
