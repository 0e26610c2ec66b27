/**
 * The benchmark's phases, each usable alone (the smoke test runs them small):
 * the baseline (a plain pooled nodemailer loop), a fan-out through the real service, and the
 * recall race. Airlock is driven only through its HTTP API; its progress is read from Redis.
 */
import { Readable } from "node:stream";
import type { Redis } from "ioredis";
import nodemailer from "nodemailer";
import { keys } from "../src/store/keys.js";
import { benchToken, type BenchUser } from "./service.js";
import type { Sink } from "./sink.js";

/** The message every phase sends: about 3 KB of MIME (text and HTML parts, headers). */
export const MAIL = {
  from: "Internal Communications <comms@corp.example>",
  subject: "Update to the mobile device policy",
  text: [
    "Dear colleagues,",
    "",
    ...Array.from({ length: 9 }, (_, i) => `Section ${i + 1}. The mobile device policy applies to every phone and tablet that reads company mail. Nothing in it asks you to delete an app.`),
    "",
    "Internal Communications",
  ].join("\n"),
  html: `<p>Dear colleagues,</p>${Array.from({ length: 9 }, (_, i) => `<p><b>Section ${i + 1}.</b> The mobile device policy applies to every phone and tablet that reads company mail.</p>`).join("")}<p>Internal Communications</p>`,
};

export interface Api {
  url: string;
  call(user: BenchUser, method: string, path: string, body?: unknown, contentType?: string): Promise<{ status: number; body: any }>;
}

export function api(url: string): Api {
  return {
    url,
    async call(user, method, path, body, contentType = "application/json") {
      const init: RequestInit & { duplex?: "half" } = { method, headers: { authorization: `Bearer ${benchToken(user)}` } };
      if (body !== undefined) {
        (init.headers as Record<string, string>)["content-type"] = contentType;
        if (body instanceof Readable) {
          init.body = Readable.toWeb(body) as unknown as BodyInit;
          init.duplex = "half";
        } else init.body = typeof body === "string" ? body : JSON.stringify(body);
      }
      const res = await fetch(url + path, init);
      const text = await res.text();
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // not JSON: keep the text for the error message
      }
      return { status: res.status, body: parsed };
    },
  };
}

const expectStatus = (what: string, r: { status: number; body: unknown }, status: number) => {
  if (r.status !== status) throw new Error(`${what}: HTTP ${r.status} ${JSON.stringify(r.body).slice(0, 500)}`);
};

export const address = (i: number) => `person${String(i).padStart(7, "0")}@corp.example`;

/** Imports `n` generated recipients as audience `name`, streamed as CSV or JSON (nothing holds the whole body). */
export async function importAudience(a: Api, name: string, n: number, format: "csv" | "json" = "csv"): Promise<{ ms: number }> {
  const t0 = performance.now();
  const row = format === "csv" ? (j: number) => `${address(j)},Person ${j}\n` : (j: number) => `${j ? "," : ""}{"email":"${address(j)}","name":"Person ${j}"}`;
  const rows = (function* () {
    yield format === "csv" ? "email,name\n" : `{"name":"${name}","recipients":[`;
    const CHUNK = 10_000;
    for (let i = 0; i < n; i += CHUNK) {
      let s = "";
      for (let j = i; j < Math.min(n, i + CHUNK); j++) s += row(j);
      yield s;
    }
    if (format === "json") yield "]}";
  })();
  const r = format === "csv"
    ? await a.call("author", "POST", `/api/audiences?name=${name}`, Readable.from(rows), "text/csv")
    : await a.call("author", "POST", "/api/audiences", Readable.from(rows), "application/json");
  expectStatus(`import of ${name}`, r, 201);
  if (r.body.size !== n) throw new Error(`audience ${name} has ${r.body.size} recipients, expected ${n}`);
  return { ms: performance.now() - t0 };
}

export interface BaselineResult {
  messages: number;
  ms: number;
  rcptPerSec: number;
}

/** One message per recipient, each built by nodemailer from its fields, through a pool of `pool` connections. */
export async function runBaseline(o: { smtpUrl: string; pool: number; count: number }): Promise<BaselineResult> {
  const u = new URL(o.smtpUrl);
  const transporter = nodemailer.createTransport({ host: u.hostname, port: Number(u.port), pool: true, maxConnections: o.pool, maxMessages: Infinity });
  let next = 0;
  const t0 = performance.now();
  // Two sends in flight per connection keeps every connection busy without an unbounded queue.
  await Promise.all(
    Array.from({ length: o.pool * 2 }, async () => {
      while (next < o.count) {
        const i = next++;
        await transporter.sendMail({
          from: MAIL.from,
          to: address(i),
          subject: MAIL.subject,
          text: MAIL.text,
          html: MAIL.html,
          headers: { "Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All" },
        });
      }
    }),
  );
  const ms = performance.now() - t0;
  transporter.close();
  return { messages: o.count, ms, rcptPerSec: (o.count * 1000) / ms };
}

export interface MessageProgress {
  state: string;
  sent: number;
  failed: number;
  releasedAt: number;
  finishAt: number;
}

export async function progress(redis: Redis, id: string): Promise<MessageProgress> {
  const [state, sent, failed, releasedAt, finishAt] = await redis.hmget(keys.message(id), "state", "sent", "failed", "releasedAt", "finishAt");
  return { state: state ?? "", sent: Number(sent ?? 0), failed: Number(failed ?? 0), releasedAt: Number(releasedAt ?? 0), finishAt: Number(finishAt ?? 0) };
}

/** Polls Redis until `done` holds; the fan-out runs in other processes, so there is no event to wait for. */
export async function pollUntil<T>(what: string, deadlineMs: number, intervalMs: number, check: () => Promise<T | null>): Promise<T> {
  const end = Date.now() + deadlineMs;
  for (;;) {
    const v = await check();
    if (v !== null) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs)); // see the caller: progress made by other processes
  }
}

/** Submits to `audience` and approves (as many approvers as required); answers the message. `extra`: more of the submit's body (`waves`, `seedAudience`). */
export async function submitAndApprove(a: Api, audience: string, subject = MAIL.subject, extra: Record<string, unknown> = {}): Promise<{ id: string; recipientCount: number }> {
  const m = await a.call("author", "POST", "/api/messages", { subject, text: MAIL.text, html: MAIL.html, audience: { lists: [audience] }, ...extra });
  expectStatus("submit", m, 201);
  const approvers: BenchUser[] = ["approver1", "approver2"];
  for (let i = 0; i < m.body.requiredApprovals; i++) expectStatus("approve", await a.call(approvers[i]!, "POST", `/api/messages/${m.body.id}/approve`, { revision: 1 }), 200);
  return { id: String(m.body.id), recipientCount: m.body.recipientCount };
}

export interface FanoutResult {
  id: string;
  recipients: number;
  /** From the release (the release job's commit) to the commit that recorded the last recipient sent. */
  ms: number;
  /** From the submit request to the last recipient sent: approvals and the 1 s hold included. */
  submitToFinishMs: number;
  rcptPerSec: number;
  redisBytesPerRecipient: number;
  /** Fan-out transactions the sink accepted (null when the sink does not count). */
  sinkMessages: number | null;
}

export async function runFanout(o: { api: Api; redis: Redis; sink: Sink; audience: string; recipients: number }): Promise<FanoutResult> {
  await o.sink.reset();
  const before = await usedMemory(o.redis);
  const submittedAt = Date.now();
  const { id, recipientCount } = await submitAndApprove(o.api, o.audience);
  if (recipientCount !== o.recipients) throw new Error(`message ${id} has ${recipientCount} recipients, expected ${o.recipients}`);
  // 100 ms polls: the timing itself comes from the timestamps the scripts store (releasedAt, finishAt).
  const done = await pollUntil(`message ${id} sent`, 120_000 + o.recipients, 100, async () => {
    const p = await progress(o.redis, id);
    if (p.state === "sent") return p;
    if (p.state !== "scheduled" && p.state !== "sending") throw new Error(`message ${id} ended ${p.state}`);
    return null;
  });
  if (done.sent !== o.recipients) throw new Error(`message ${id}: ${done.sent} sent, ${done.failed} failed of ${o.recipients}`);
  const after = await usedMemory(o.redis);
  const ms = done.finishAt - done.releasedAt;
  return {
    id,
    recipients: o.recipients,
    ms,
    submitToFinishMs: done.finishAt - submittedAt,
    rcptPerSec: (o.recipients * 1000) / ms,
    redisBytesPerRecipient: Math.round((after - before) / o.recipients),
    sinkMessages: (await o.sink.stats()).original?.messages ?? null,
  };
}

export interface RecallResult {
  id: string;
  recipients: number;
  /** What the recall answered: sent + in an SMTP transaction at that instant. */
  delivered: number;
  /** Distinct recipients the sink got the original for, beyond `delivered` (promise 3: must be 0). */
  sentAfterAck: number;
  /** Recipients the sink got the original for twice. */
  duplicates: number;
  ackMs: number;
  /** From sending the recall to the end of the last original transaction the sink saw. */
  stopMs: number;
  corrected: number;
  correctionRcptPerSec: number;
}

/** A fan-out recalled at `at` (fraction of the recipients sent). The sink must be a recording one. */
export async function runRecallRace(o: { api: Api; redis: Redis; sink: Sink; audience: string; recipients: number; at?: number }): Promise<RecallResult> {
  await o.sink.reset();
  const { id } = await submitAndApprove(o.api, o.audience, "Delete that app (sent in error)");
  const threshold = Math.floor(o.recipients * (o.at ?? 0.5));
  // 2 ms polls: the recall should land near the middle however fast the fan-out runs.
  await pollUntil(`message ${id} half sent`, 120_000 + o.recipients, 2, async () => {
    const p = await progress(o.redis, id);
    if (p.state !== "scheduled" && p.state !== "sending") throw new Error(`message ${id} is ${p.state} before the recall`);
    return p.sent >= threshold ? p : null;
  });
  const t0 = Date.now();
  // The standard correction: it starts at once (a custom text would wait for a second person's approval).
  const r = await o.api.call("ops", "POST", `/api/messages/${id}/recall`, { reason: "sent in error" });
  const ackAt = Date.now();
  expectStatus("recall", r, 200);
  const delivered: number = r.body.delivered;
  const final = await pollUntil(`message ${id} corrected`, 120_000 + o.recipients, 20, async () => {
    const [state, corrected] = await o.redis.hmget(keys.message(id), "state", "corrected");
    return state === "corrected" || state === "recalled" ? { state, corrected: Number(corrected ?? 0) } : null;
  });
  const s = await o.sink.stats();
  if (s.distinctOriginals === undefined || !s.original || !s.correction) throw new Error("the recall race needs a recording sink");
  return {
    id,
    recipients: o.recipients,
    delivered,
    sentAfterAck: Math.max(0, s.distinctOriginals - delivered),
    duplicates: s.duplicates ?? 0,
    ackMs: ackAt - t0,
    stopMs: Math.max(0, s.original.lastAt - t0),
    corrected: final.corrected,
    correctionRcptPerSec: s.correction.recipients && s.correction.lastAt > s.correction.firstAt ? (s.correction.recipients * 1000) / (s.correction.lastAt - s.correction.firstAt) : 0,
  };
}

async function usedMemory(redis: Redis): Promise<number> {
  const info = await redis.info("memory");
  return Number(/^used_memory:(\d+)/m.exec(info)?.[1] ?? 0);
}
