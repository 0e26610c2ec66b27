/**
 * POST /api/audiences bounded in time: rows received per upload (duplicates and empty lines
 * included), and uploads at a time per user (counted in Redis, leased, released on every ending).
 */
import { request, type ClientRequest } from "node:http";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { AudienceStore } from "../../src/audiences/audience-store.js";
import { AudienceError } from "../../src/audiences/errors.js";
import { DomainError } from "../../src/domain/errors.js";
import { keys, PREFIX } from "../../src/store/keys.js";
import { startAirlock, tokenOf, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";

let a: TestAirlock;
let redis: Redis;
beforeAll(async () => {
  a = await startAirlock();
  redis = new Redis(a.redis.url);
});
afterAll(async () => {
  redis?.disconnect();
  await a?.stop();
});
afterEach(() => void vi.restoreAllMocks());

const scratchKeys = () => redis.keys(`${PREFIX}:upload:*`);
/** Uploads `user` runs now, as counted in Redis. */
const running = (user: UserKey) => redis.zcard(keys.uploadSlots(USERS[user].email));
const members = (name: string) => redis.zrange(keys.audience(name), 0, "-1");
const redisNow = async () => {
  const [s, us] = await redis.time();
  return Number(s) * 1000 + Math.floor(Number(us) / 1000);
};

/** The runtime builds its store with the defaults (2,000,000 rows): the app's uploads go through one bounded at `maxRows`. */
function boundRows(maxRows: number): void {
  const bounded = new AudienceStore({ redis: a.rt.redis, clock: a.clock, maxRows, chunkSize: 10 });
  vi.spyOn(a.rt.audiences, "replaceFromRecords").mockImplementation((name, by, records, opts) => bounded.replaceFromRecords(name, by, records, opts));
}

interface OpenUpload {
  req: ClientRequest;
  /** The answer (status 0: the request failed, e.g. aborted by us). */
  answer: Promise<{ status: number; body: any }>;
}

/** An upload whose body is sent as far as `first` and left open: `req.end()` finishes it, `req.destroy()` aborts it. */
function openUpload(user: UserKey, type: "text/csv" | "application/json", name: string, first: string): OpenUpload {
  const u = new URL(`${a.url}/api/audiences${type === "text/csv" ? `?name=${name}` : ""}`);
  const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: "POST", headers: { authorization: `Bearer ${tokenOf(user)}`, "content-type": type } });
  const answer = new Promise<{ status: number; body: any }>((resolve) => {
    req.on("response", (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (text += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      res.on("error", () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    req.on("error", (err) => resolve({ status: 0, body: err.message }));
  });
  req.write(first);
  return { req, answer };
}

describe("rows received per upload", () => {
  it("refuses a CSV of duplicates past the bound as soon as it is passed, leaving the audience and no scratch keys", async () => {
    expect((await a.call("author", "POST", "/api/audiences", { name: "dup-csv", recipients: [{ email: "ann@corp.example" }, { email: "ben@corp.example" }] })).status).toBe(201);
    boundRows(50);
    // 60 rows of one address, and the body never ends: only the bound can end this upload.
    const up = openUpload("author", "text/csv", "dup-csv", "email\n" + "same@corp.example\n".repeat(60));
    const r = await up.answer;
    up.req.destroy();
    expect(r.status).toBe(413);
    expect(r.body.error).toMatchObject({ code: "too_large", details: { maxRows: 50 } });
    expect(r.body.error.message).toContain("at most 50 rows, duplicates included");
    expect(await members("dup-csv")).toEqual(["ann@corp.example", "ben@corp.example"]);
    expect((await a.call("author", "GET", "/api/audiences/dup-csv")).body).toMatchObject({ size: 2, version: 1 });
    expect(await scratchKeys()).toEqual([]);
    expect(await running("author")).toBe(0);
  });

  it("refuses a JSON body of duplicates past the bound, leaving the audience and no scratch keys", async () => {
    expect((await a.call("author", "POST", "/api/audiences", { name: "dup-json", recipients: [{ email: "cy@corp.example" }] })).status).toBe(201);
    boundRows(50);
    const r = await a.call("author", "POST", "/api/audiences", { name: "dup-json", recipients: Array.from({ length: 51 }, () => ({ email: "same@corp.example" })) });
    expect(r.status).toBe(413);
    expect(r.body.error).toMatchObject({ code: "too_large", details: { maxRows: 50 } });
    expect(await members("dup-json")).toEqual(["cy@corp.example"]);
    expect((await a.call("author", "GET", "/api/audiences/dup-json")).body).toMatchObject({ size: 1, version: 1 });
    expect(await scratchKeys()).toEqual([]);
  });

  it("counts a CSV's empty lines as rows, and takes a list with duplicates within the bound", async () => {
    boundRows(50);
    const blank = await a.call("author", "POST", "/api/audiences?name=blank-lines", "email\nann@corp.example\n" + "\n".repeat(60), { "content-type": "text/csv" });
    expect(blank.status).toBe(413);
    expect((await a.call("author", "GET", "/api/audiences/blank-lines")).status).toBe(404);
    const rows = Array.from({ length: 45 }, (_, i) => `p${i % 5}@corp.example\n`).join(""); // and 2 empty lines: 47 rows
    const ok = await a.call("author", "POST", "/api/audiences?name=some-dupes", "email\n" + rows + "\n\n", { "content-type": "text/csv" });
    expect(ok.status).toBe(201);
    expect(ok.body).toMatchObject({ name: "some-dupes", size: 5 });
    expect(await scratchKeys()).toEqual([]);
  });

  it("bounds rows at twice the distinct recipients by default, and at no fewer than 10,000", async () => {
    const dupes = (n: number) => Array.from({ length: n }, () => ({ email: "same@corp.example" }));
    for (const [maxRecipients, maxRows] of [[6000, 12_000], [5, 10_000]] as const) {
      const store = new AudienceStore({ redis: a.rt.redis, clock: a.clock, maxRecipients });
      expect((await store.replaceFromRecords("default-rows", "author@corp.example", dupes(maxRows))).size).toBe(1);
      const err = await store.replaceFromRecords("default-rows", "author@corp.example", dupes(maxRows + 1)).then(() => null, (e: unknown) => e);
      expect(err).toBeInstanceOf(AudienceError);
      expect(err).toMatchObject({ code: "too_many_recipients", details: { maxRows } });
    }
    expect(await scratchKeys()).toEqual([]);
  });
});

describe("uploads at a time per user", () => {
  it("refuses a third upload with 429 before its body is read, not another user's, and frees the places on success and on abort", async () => {
    const csv = openUpload("author", "text/csv", "slow-csv", "email\nx1@corp.example\n");
    const json = openUpload("author", "application/json", "slow-json", '{"name":"slow-json","recipients":[{"email":"y1@corp.example"}');
    await a.until("both uploads hold a place", async () => (await running("author")) === 2);

    // Its body is never finished: the answer comes before it is read.
    const third = openUpload("author", "text/csv", "third", "email\nz1@corp.example\n");
    const refused = await third.answer;
    third.req.destroy();
    expect(refused.status).toBe(429);
    expect(refused.body.error).toMatchObject({ code: "rate_limited", details: { maxConcurrentUploads: 2 } });
    expect(refused.body.error.message).toContain("at most 2 audience uploads at a time");
    const json3 = await a.call("author", "POST", "/api/audiences", { name: "third", recipients: [{ email: "z1@corp.example" }] });
    expect(json3.status).toBe(429);
    expect(await running("author")).toBe(2);

    const other = await a.call("author2", "POST", "/api/audiences", { name: "other-user", recipients: [{ email: "o@corp.example" }] });
    expect(other.status).toBe(201);

    csv.req.end("x2@corp.example\n");
    expect(await csv.answer).toMatchObject({ status: 201, body: { name: "slow-csv", size: 2 } });
    expect(await running("author")).toBe(1); // given back before the answer
    json.req.destroy();
    await a.until("the aborted upload gives its place back", async () => (await running("author")) === 0);
    expect(await json.answer).toMatchObject({ status: 0 });

    const again = await a.call("author", "POST", "/api/audiences", { name: "third", recipients: [{ email: "z1@corp.example" }] });
    expect(again).toMatchObject({ status: 201, body: { name: "third", size: 1 } });
    expect((await a.call("author", "GET", "/api/audiences/slow-json")).status).toBe(404);
    expect(await redis.exists(keys.uploadSlots(USERS.author.email))).toBe(0);
    expect(await scratchKeys()).toEqual([]);
  });

  it("gives the place back after a refused upload", async () => {
    for (let i = 0; i < 3; i++) {
      const r = await a.call("author", "POST", "/api/audiences", { name: "refused", recipients: [{ email: "not an address" }] });
      expect(r.status).toBe(400);
    }
    expect(await running("author")).toBe(0);
  });

  it("holds across stores (API processes), renews a running upload's lease, and lets a crashed one's lease end", async () => {
    const user = "lease@corp.example";
    const key = keys.uploadSlots(user);
    // Renewed every second: a late timer (a loaded CI machine) has two seconds before the lease would lapse.
    const opts = { clock: a.clock, maxConcurrentUploads: 1, uploadLeaseMs: 3000 };
    const one = new AudienceStore({ redis: a.rt.redis, ...opts });
    const elsewhere = new Redis(a.redis.url);
    try {
      const two = new AudienceStore({ redis: elsewhere, ...opts });
      const refusal = (p: Promise<unknown>) => p.then(() => null, (e: unknown) => e);

      const slot = await one.startUpload(user);
      const firstEnd = Number(await redis.zscore(key, (await redis.zrange(key, 0, "0"))[0]!));
      expect(await redis.pttl(key)).toBeGreaterThan(0); // the key goes with its last lease
      expect(await refusal(two.startUpload(user))).toMatchObject({ code: "rate_limited" });
      // Past the end of its first lease, the running upload still holds its place: it was renewed.
      await a.until("the first lease has ended", async () => (await redisNow()) > firstEnd + 50);
      expect(await refusal(two.startUpload(user))).toBeInstanceOf(DomainError);
      await slot.release();
      await slot.release();
      expect(await redis.exists(key)).toBe(0);

      // What a process that crashed mid-upload leaves: a lease nobody renews.
      await redis.zadd(key, (await redisNow()) + 2000, "crashed");
      expect(await refusal(two.startUpload(user))).toMatchObject({ code: "rate_limited" });
      await a.until("the crashed upload's lease ends", async () => (await redisNow()) > Number(await redis.zscore(key, "crashed")));
      const next = await two.startUpload(user);
      expect(await redis.zrange(key, 0, "-1")).not.toContain("crashed");
      await next.release();
    } finally {
      elsewhere.disconnect();
    }
  });
});
