import { Readable } from "node:stream";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AudienceStore } from "../../src/audiences/audience-store.js";
import { parseCsv, type AudienceRecord } from "../../src/audiences/csv.js";
import { AudienceError } from "../../src/audiences/errors.js";
import { keys, PREFIX } from "../../src/store/keys.js";
import { startTestRedis, type TestRedis } from "../support/redis.js";

const NOW = Date.parse("2024-05-01T12:00:00.000Z");
const clock = { now: () => NOW };
const csv = (text: string) => parseCsv(Readable.from([text]));

describe("audience store", () => {
  let server: TestRedis;
  let redis: Redis;
  let store: AudienceStore;
  let n = 0;
  /** A fresh audience name per test, so tests sharing one Redis never see each other's data. */
  const fresh = () => `aud-${++n}`;

  beforeAll(async () => {
    server = await startTestRedis();
    redis = new Redis(server.url);
    store = new AudienceStore({ redis, clock });
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.cleanup();
  });

  const members = (name: string) => redis.zrange(keys.audience(name), 0, "-1");
  const details = async (name: string) =>
    Object.fromEntries(Object.entries(await redis.hgetall(keys.audienceDetails(name))).map(([k, v]) => [k, JSON.parse(v)]));
  const scratchKeys = async () => redis.keys(`${PREFIX}:upload:*`);
  const refusal = async (p: Promise<unknown>): Promise<AudienceError> => {
    const err = await p.then(() => null, (e: unknown) => e);
    expect(err).toBeInstanceOf(AudienceError);
    return err as AudienceError;
  };

  it("replaces an audience from JSON records, storing details only when present", async () => {
    const name = fresh();
    await store.replaceFromRecords(name, "old@corp.example", [{ email: "gone@corp.example", name: "Gone" }]);
    const info = await store.replaceFromRecords(
      name,
      "admin@corp.example",
      [
        { email: "bob@corp.example", name: "Bob", department: "Finance" },
        { email: "ann@corp.example" },
        { email: "cat@corp.example", department: "Ops" },
      ],
      { anyOwner: true },
    );
    const { added, removed, ...current } = info;
    expect(current).toEqual({ name, size: 3, updatedAt: "2024-05-01T12:00:00.000Z", by: "admin@corp.example", owner: "old@corp.example", version: 2 });
    expect({ added, removed }).toEqual({ added: 3, removed: 1 });
    expect(await members(name)).toEqual(["ann@corp.example", "bob@corp.example", "cat@corp.example"]);
    expect(await details(name)).toEqual({
      "bob@corp.example": { name: "Bob", department: "Finance" },
      "cat@corp.example": { department: "Ops" },
    });
    expect(await store.get(name)).toEqual(current);
    expect(await redis.ttl(keys.audience(name))).toBe(-1); // the scratch TTL must not survive the rename
    expect(await redis.ttl(keys.audienceDetails(name))).toBe(-1);
    expect(await scratchKeys()).toEqual([]);
  });

  it("drops the old details when the new upload has none", async () => {
    const name = fresh();
    await store.replaceFromRecords(name, "a@corp.example", [{ email: "x@corp.example", name: "X" }]);
    await store.replaceFromRecords(name, "a@corp.example", [{ email: "y@corp.example" }]);
    expect(await redis.exists(keys.audienceDetails(name))).toBe(0);
  });

  it("lists audiences sorted by name, and answers null for unknown or invalid names", async () => {
    await store.replaceFromRecords("zz-last", "a@corp.example", [{ email: "z@corp.example" }]);
    await store.replaceFromRecords("00-first", "a@corp.example", [{ email: "z@corp.example" }]);
    const names = (await store.list()).map((a) => a.name);
    expect(names).toEqual([...names].sort());
    expect(names[0]).toBe("00-first");
    expect(names.at(-1)).toBe("zz-last");
    expect(await store.get("no-such-audience")).toBeNull();
    expect(await store.get("../Bad Name")).toBeNull();
  });

  it("reads a CSV with a header in any case and order, ignoring other columns", async () => {
    const name = fresh();
    const info = await store.replaceFromRecords(
      name,
      "a@corp.example",
      csv("Department,EMAIL,Employee Id,Name\nFinance,bob@corp.example,17,Bob\n,ann@corp.example,18,\n"),
    );
    expect(info.size).toBe(2);
    expect(await details(name)).toEqual({ "bob@corp.example": { name: "Bob", department: "Finance" } });
  });

  it("reads a CSV without a header: the first column is the email", async () => {
    const name = fresh();
    await store.replaceFromRecords(name, "a@corp.example", csv("ann@corp.example,Ann\nbob@corp.example\n\n"));
    expect(await members(name)).toEqual(["ann@corp.example", "bob@corp.example"]);
    expect(await redis.exists(keys.audienceDetails(name))).toBe(0);
  });

  it("reads quoted fields containing commas and quotes, and strips a BOM", async () => {
    const name = fresh();
    const text = '\uFEFFemail,name,department\r\nann@corp.example,"Lee, Ann","R&D, ""Labs"""\r\n';
    await store.replaceFromRecords(name, "a@corp.example", csv(text));
    expect(await details(name)).toEqual({ "ann@corp.example": { name: "Lee, Ann", department: 'R&D, "Labs"' } });
    const headerless = fresh();
    await store.replaceFromRecords(headerless, "a@corp.example", csv("\uFEFFbob@corp.example\n"));
    expect(await members(headerless)).toEqual(["bob@corp.example"]);
  });

  it("lower-cases and deduplicates, counting each address once", async () => {
    const name = fresh();
    const info = await store.replaceFromRecords(
      name,
      "a@corp.example",
      csv("email\nAnn@Corp.Example\n ann@corp.example \nANN@CORP.EXAMPLE\nbob@corp.example\n"),
    );
    expect(info.size).toBe(2);
    expect(await members(name)).toEqual(["ann@corp.example", "bob@corp.example"]);
  });

  it("refuses the first invalid row, keeps the previous audience, and leaves no scratch keys", async () => {
    const name = fresh();
    await store.replaceFromRecords(name, "a@corp.example", [{ email: "keep@corp.example", name: "Keep" }]);
    const before = await store.get(name);
    const rows = ["email", ...Array.from({ length: 2500 }, (_, i) => `u${i}@corp.example`), '"evil@x.com, all@corp.example"'];
    const err = await refusal(store.replaceFromRecords(name, "a@corp.example", csv(rows.join("\n"))));
    expect(err.code).toBe("invalid_recipient");
    expect(err.details).toMatchObject({ row: 2501 });
    expect(err.message).toMatch(/Row 2501: address contains a comma/);
    expect(await store.get(name)).toEqual(before);
    expect(await members(name)).toEqual(["keep@corp.example"]);
    expect(await details(name)).toEqual({ "keep@corp.example": { name: "Keep" } });
    expect(await scratchKeys()).toEqual([]);
  });

  it("refuses control characters in names, a missing email, an empty upload and a bad audience name", async () => {
    const name = fresh();
    const header = await refusal(store.replaceFromRecords(name, "a", [{ email: "a@corp.example", name: "A\r\nBcc: x" }]));
    expect(header.code).toBe("invalid_recipient");
    expect(header.details).toMatchObject({ row: 1, reason: "name contains control characters" });
    const missing = await refusal(store.replaceFromRecords(name, "a", [{ email: "a@corp.example" }, {} as AudienceRecord]));
    expect(missing.details).toMatchObject({ row: 2, reason: "has no email" });
    expect((await refusal(store.replaceFromRecords(name, "a", []))).code).toBe("empty_audience");
    expect((await refusal(store.replaceFromRecords(name, "a", csv("email\n")))).code).toBe("empty_audience");
    expect((await refusal(store.replaceFromRecords("Bad_Name", "a", [{ email: "a@corp.example" }]))).code).toBe("invalid_name");
    expect(await store.get(name)).toBeNull();
    expect(await scratchKeys()).toEqual([]);
  });

  it("refuses a CSV without an email column, and a malformed CSV with its line", async () => {
    const name = fresh();
    const noEmail = await refusal(store.replaceFromRecords(name, "a", csv("mail,name\nx,y\n")));
    expect(noEmail.code).toBe("invalid_csv");
    expect(noEmail.message).toMatch(/no "email" column \(header: mail, name\)/);
    const broken = await refusal(store.replaceFromRecords(name, "a", csv('email\nann@corp.example\n"bob@corp.example"x\n')));
    expect(broken.code).toBe("invalid_csv");
    expect(broken.details).toMatchObject({ line: 3 });
    expect(broken.message).toMatch(/line 3/);
    expect(await store.get(name)).toBeNull();
    expect(await scratchKeys()).toEqual([]);
  });

  it("stops reading the upload at the first invalid row and releases the source stream", async () => {
    let produced = 0;
    // An endless source: the upload must end because of the bad row, not because input ran out.
    const endless = new Readable({
      read() {
        produced += 1;
        this.push(produced === 1 ? "email\nbad@@corp.example\n" : `u${produced}@corp.example\n`);
      },
    });
    const err = await refusal(store.replaceFromRecords(fresh(), "a", parseCsv(endless)));
    expect(err.details).toMatchObject({ row: 1, reason: "address has more than one @" });
    await new Promise<void>((resolve) => (endless.destroyed ? resolve() : endless.once("close", resolve)));
    expect(endless.destroyed).toBe(true);
  });

  it("passes a failing source stream's own error through", async () => {
    const failing = new Readable({
      read() {
        this.destroy(new Error("client went away"));
      },
    });
    await expect(store.replaceFromRecords(fresh(), "a", parseCsv(failing))).rejects.toThrow("client went away");
    expect(await scratchKeys()).toEqual([]);
  });

  it("refuses more distinct recipients than the limit, counting duplicates once", async () => {
    const small = new AudienceStore({ redis, clock, maxRecipients: 5, chunkSize: 2 });
    const name = fresh();
    const dupes = Array.from({ length: 20 }, (_, i) => ({ email: `u${i % 5}@corp.example` }));
    expect((await small.replaceFromRecords(name, "a", dupes)).size).toBe(5);
    const six = Array.from({ length: 6 }, (_, i) => ({ email: `u${i}@corp.example` }));
    const err = await refusal(small.replaceFromRecords(name, "a", six));
    expect(err.code).toBe("too_many_recipients");
    expect((await store.get(name))?.size).toBe(5);
    expect(await scratchKeys()).toEqual([]);
  });

  it("replaces atomically: readers see the old audience until the new one commits", async () => {
    const name = fresh();
    await store.replaceFromRecords(name, "a@corp.example", [{ email: "old1@corp.example" }, { email: "old2@corp.example" }]);
    let reachedGate!: () => void;
    const reached = new Promise<void>((r) => (reachedGate = r));
    let openGate!: () => void;
    const gate = new Promise<void>((r) => (openGate = r));
    async function* slowUpload(): AsyncIterable<AudienceRecord> {
      for (let i = 0; i < 5000; i++) {
        if (i === 3000) {
          reachedGate();
          await gate; // 3 chunks are already in Redis, under the scratch key
        }
        yield { email: `new${i}@corp.example` };
      }
    }
    const upload = store.replaceFromRecords(name, "b@corp.example", slowUpload(), { anyOwner: true });
    await reached;
    expect((await scratchKeys()).length).toBeGreaterThan(0);
    expect(await redis.zcard(keys.audience(name))).toBe(2);
    expect(await store.get(name)).toMatchObject({ size: 2, by: "a@corp.example" });
    openGate();
    expect(await upload).toMatchObject({ size: 5000, by: "b@corp.example" });
    expect(await redis.zcard(keys.audience(name))).toBe(5000);
    expect(await store.get(name)).toMatchObject({ size: 5000 });
  });

  it("imports a 100,000-row CSV stream with bounded memory", async () => {
    const name = fresh();
    const total = 100_000;
    let next = 0;
    // Rows are generated on demand, so the test itself holds no more than one chunk either.
    const source = new Readable({
      read() {
        if (next === 0) this.push("email,name,department\n");
        if (next >= total) return void this.push(null);
        let chunk = "";
        for (let i = 0; i < 1000 && next < total; i++, next++) {
          chunk += `User${String(next).padStart(6, "0")}@Corp.Example,"Employee ${next}, Jr.",Dept ${next % 40}\n`;
        }
        this.push(chunk);
      },
    });
    const rssBefore = process.memoryUsage().rss;
    let peak = rssBefore;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().rss)), 20);
    try {
      const info = await store.replaceFromRecords(name, "a@corp.example", parseCsv(source));
      expect(info.size).toBe(total);
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage().rss);
    expect(peak - rssBefore).toBeLessThan(150 * 1024 * 1024);
    expect(await redis.zcard(keys.audience(name))).toBe(total);
    expect(await redis.hlen(keys.audienceDetails(name))).toBe(total);
    expect(await redis.zrange(keys.audience(name), 0, "0")).toEqual(["user000000@corp.example"]);
    expect(JSON.parse((await redis.hget(keys.audienceDetails(name), "user099999@corp.example")) ?? "null")).toEqual({
      name: "Employee 99999, Jr.",
      department: "Dept 39",
    });
  });
});
