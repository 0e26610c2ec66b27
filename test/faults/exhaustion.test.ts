/**
 * The worst one author's credentials can do to the API: many large edits and many large audience
 * uploads at once, lists and pages read over and over. The API process runs with the heap cap it
 * has in production (--max-old-space-size=512): it must stay well under it, answer everything
 * (no 5xx), and answer a recall in the middle of it.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startTestRedis, type TestRedis } from "../support/redis.js";
import { startSmtpSink, type SmtpSink } from "../support/smtp-sink.js";
import { spawnAirlock, writeUsers, type AirlockProcess } from "../support/processes.js";
import { tokenOf, type UserKey } from "../support/airlock.js";

const HEAP_CAP_MB = 512;
let redis: TestRedis;
let sink: SmtpSink;
let dir: string;
let apiProc: AirlockProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "airlock-exhaustion-"));
  [redis, sink] = await Promise.all([startTestRedis(), startSmtpSink()]);
  apiProc = await spawnAirlock("api", {
    NODE_OPTIONS: `--max-old-space-size=${HEAP_CAP_MB}`,
    REDIS_URL: redis.url,
    SMTP_URL: sink.url,
    USERS_FILE: writeUsers(dir),
    LINK_SECRET: "exhaustion-link-secret-0123456789abcdef",
    HOLD_MIN_SECONDS: "3600",
    // Large audiences go all at once here (staged sends have their own tests and bench phase).
    WAVES_THRESHOLD: "0",
    // The per-address limit would stop one client long before memory is at stake: this is about what gets through it.
    API_RATE_LIMIT_PER_MINUTE: "1000000",
  });
}, 120_000);

afterAll(async () => {
  await apiProc?.kill9();
  await sink?.close();
  await redis?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/**
 * One request on a connection of its own (http.request, no agent): fetch's pooled keep-alive
 * connections race the server closing an idle one (its 5 s keep-alive timeout), and under this
 * load a reused connection can be closed as a large body is written to it (EPIPE), which says
 * nothing about the service. A fresh connection per request has no such race.
 */
function call(user: UserKey, method: string, path: string, body?: unknown, contentType = "application/json"): Promise<{ status: number; body: any }> {
  const payload = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${apiProc.url}${path}`,
      { method, agent: false, headers: { authorization: `Bearer ${tokenOf(user)}`, ...(payload === undefined ? {} : { "content-type": contentType, "content-length": Buffer.byteLength(payload) }) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            // not JSON
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
        res.on("error", reject);
      },
    );
    req.on("error", reject);
    req.end(payload);
  });
}

/** The API process's V8 heap in use, from its own /metrics (prom-client's default metrics). */
async function heapUsedMb(): Promise<number> {
  const text = await (await fetch(`${apiProc.url}/metrics`)).text();
  const line = /^airlock_nodejs_heap_size_used_bytes (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  if (!line) throw new Error("no heap figure in /metrics");
  return Number(line[1]) / 2 ** 20;
}

/** The largest body an edit may carry (text 200,000 and HTML 500,000 characters): ~0.7 MB of the 1 MB JSON limit. */
const huge = (tag: string) => ({ text: `${tag} `.padEnd(199_000, "lorem ipsum "), html: `<p>${tag} ${"lorem ipsum ".repeat(41_000)}</p>` });

async function csvUpload(user: UserKey, name: string, rows: number): Promise<number> {
  const lines = ["email,name,department"];
  for (let i = 0; i < rows; i++) lines.push(`${name}-${i}@corp.example,Person ${i} of a rather long name,Department ${i % 97}`);
  return (await call(user, "POST", `/api/audiences?name=${name}`, lines.join("\n"), "text/csv")).status;
}

it("stays under its heap cap, answers every request without a 5xx, and answers a recall meanwhile", async () => {
  const authors: UserKey[] = ["author", "author2", "authorApprover", "admin"];
  const targets = await Promise.all(authors.map(async (u) => (await call(u, "POST", "/api/messages", { subject: `Flood ${u}`, ...huge(u), audience: { addresses: ["ann@corp.example"] } })).body));
  for (const t of targets) expect(t.id, JSON.stringify(t).slice(0, 300)).toBeDefined();
  const victim = (await call("author", "POST", "/api/messages", { subject: "To recall in the flood", text: "x", audience: { addresses: ["ann@corp.example"] } })).body;
  expect((await call("approver1", "POST", `/api/messages/${victim.id}/approve`, { revision: 1 })).status).toBe(200);

  let peak = await heapUsedMb();
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      peak = Math.max(peak, await heapUsedMb().catch(() => peak));
      await new Promise((r) => setTimeout(r, 100)); // a heap sample every 100 ms while the flood runs
    }
  })();

  const statuses: number[] = [];
  const edits = async (round: number) => {
    const r = await Promise.all(
      targets.flatMap((t, i) => Array.from({ length: 16 }, (_, k) => call(authors[i]!, "PUT", `/api/messages/${t.id}`, { subject: `Flood ${round}.${k}`, ...huge(`r${round}.${k}`), audience: { addresses: ["ann@corp.example"] } }))),
    );
    statuses.push(...r.map((x) => x.status));
  };
  const reads = async () => {
    const r = await Promise.all([
      ...Array.from({ length: 20 }, () => call("ops", "GET", "/api/messages?limit=200")),
      ...targets.flatMap((t) => Array.from({ length: 5 }, () => call("ops", "GET", `/api/messages/${t.id}`))),
      ...targets.map((t) => call("ops", "GET", `/api/messages/${t.id}/revisions?limit=10`)),
    ]);
    statuses.push(...r.map((x) => x.status));
  };
  const uploads = Promise.all(authors.flatMap((u) => [0, 1, 2].map((k) => csvUpload(u, `flood-${u.toLowerCase()}-${k}`, 150_000))));

  const flood = (async () => {
    for (let round = 0; round < 4; round++) await Promise.all([edits(round), reads()]);
  })();
  // In the middle of it: the recall, which must be answered with success.
  const recall = await call("ops", "POST", `/api/messages/${victim.id}/recall`, { reason: "recalled during the flood" });
  const [uploadStatuses] = await Promise.all([uploads, flood]);
  sampling = false;
  await sampler;

  expect(recall.status, JSON.stringify(recall.body)).toBe(200);
  expect(recall.body.state).toBe("recalled");
  statuses.push(...uploadStatuses);
  // 200/201 done, 409 a revision cap or a concurrent edit, 429 an upload over the per-user limit: never a 5xx.
  expect(statuses.filter((s) => s >= 500)).toEqual([]);
  expect(new Set(statuses.filter((s) => ![200, 201, 409, 429].includes(s)))).toEqual(new Set());
  expect(uploadStatuses.filter((s) => s === 201).length).toBeGreaterThanOrEqual(authors.length); // two at a time each: the first two of each got in
  expect(uploadStatuses.filter((s) => s === 429).length).toBeGreaterThan(0);
  expect(apiProc.child.exitCode).toBeNull();
  expect(peak).toBeLessThan(HEAP_CAP_MB * 0.75);
  process.stdout.write(
    `exhaustion: ${statuses.length} requests (${statuses.filter((s) => s === 409).length} × 409, ${statuses.filter((s) => s === 429).length} × 429), recall ${recall.status}; peak heap used ${peak.toFixed(0)} MB of a ${HEAP_CAP_MB} MB cap\n`,
  );
}, 300_000);
