/** GET /metrics: Prometheus text with the figures an operator alerts on. */
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
beforeAll(async () => {
  a = await startAirlock({ RECIPIENTS_PER_TRANSACTION: "2" });
});
afterAll(async () => a?.stop());

/** The value of one sample line, e.g. `airlock_recipients{outcome="sent"}`. */
function sample(text: string, name: string): number | undefined {
  const line = text.split("\n").find((l) => l.startsWith(name + " "));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

it("counts messages by state, recipients by outcome, SMTP transactions and queue depths", async () => {
  const m = (await a.call("author", "POST", "/api/messages", { subject: "Metrics", text: "x", audience: { addresses: ["a@corp.example", "b@corp.example", "c@corp.example"] } })).body;
  expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1 })).status).toBe(200);
  await a.until("sent", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "sent");
  expect((await a.call("ops", "POST", `/api/messages/${m.id}/recall`, { reason: "metrics test" })).status).toBe(200);
  await a.until("corrected", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "corrected");

  const res = await fetch(`${a.url}/metrics`); // no token: the spec leaves it unauthenticated
  expect(res.status).toBe(200);
  expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
  const text = await res.text();
  expect(sample(text, 'airlock_messages{state="corrected"}')).toBe(1);
  expect(sample(text, 'airlock_messages{state="sending"}')).toBe(0);
  expect(sample(text, 'airlock_recipients{outcome="sent"}')).toBe(3);
  expect(sample(text, 'airlock_recipients{outcome="corrected"}')).toBe(3);
  expect(sample(text, "airlock_possible_duplicates")).toBe(0);
  // 3 recipients, 2 per transaction: 2 transactions for the original, 2 for the correction.
  expect(sample(text, 'airlock_smtp_transaction_seconds_count{kind="original",result="ok"}')).toBe(2);
  expect(sample(text, 'airlock_smtp_transaction_seconds_count{kind="correction",result="ok"}')).toBe(2);
  expect(sample(text, 'airlock_queue_jobs{queue="fanout",state="failed"}')).toBe(0);
  // The recall found nothing in flight (the message was fully sent): its answer was the stop.
  expect(sample(text, "airlock_recall_to_stop_seconds_count")).toBe(1);
  expect(sample(text, 'airlock_recall_to_stop_seconds_bucket{le="0.01"}')).toBe(1);
  expect(text).toContain("airlock_process_resident_memory_bytes");
  expect(text).not.toContain("Metrics"); // no subjects (or addresses) in an unauthenticated endpoint
});

it("serves a worker-only process's metrics on their own port", async () => {
  const { url } = await a.rt.startMetricsServer(0);
  const res = await fetch(url);
  expect(res.status).toBe(200);
  const text = await res.text();
  expect(sample(text, 'airlock_smtp_transaction_seconds_count{kind="original",result="ok"}')).toBe(2);
  expect(text).toContain('airlock_queue_jobs{queue="fanout",state="failed"} 0');
  expect((await fetch(url.replace("/metrics", "/other"))).status).toBe(404);
  expect((await fetch(url.replace("/metrics", "/healthz"))).status).toBe(200);
});
