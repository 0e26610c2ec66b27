/** ALLOWED_RECIPIENT_DOMAINS: refused at audience upload and at submit, naming the addresses; nothing changes (promise 8). */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AudienceStore } from "../../src/audiences/audience-store.js";
import { keys, PREFIX } from "../../src/store/keys.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
beforeAll(async () => {
  // Mixed case and spaces: the setting is normalized at start.
  a = await startAirlock({ ALLOWED_RECIPIENT_DOMAINS: "Corp.Example, corp-eu.example" });
});
afterAll(async () => a?.stop());

const team = ["ann@corp.example", "ben@corp.example", "cy@corp-eu.example"];
const upload = (name: string, emails: string[]) => a.call("author", "POST", "/api/audiences", { name, recipients: emails.map((email) => ({ email })) });
const uploadCsv = (name: string, text: string) => a.call("author", "POST", `/api/audiences?name=${name}`, text, { "content-type": "text/csv" });
const audience = async (name: string) => (await a.call("author", "GET", `/api/audiences/${name}`)).body;
const scratchKeys = () => a.rt.redis.keys(`${PREFIX}:upload:*`);
const messageCount = async () => (await a.call("ops", "GET", "/api/messages?limit=200")).body.items.length as number;
const message = (audienceOf: { lists?: string[]; addresses?: string[] }) => ({
  subject: "Building closed on Friday",
  text: "The office is closed on Friday for maintenance.",
  audience: audienceOf,
});

describe("audience uploads", () => {
  it("refuses a JSON upload with an address outside, naming it with its row, and keeps the previous version", async () => {
    expect((await upload("kept-json", team)).status).toBe(201);
    const before = await audience("kept-json");
    const domainsBefore = await a.rt.audiences.domains("kept-json");

    const r = await upload("kept-json", ["ann@corp.example", "Eve@Gmail.com", "dan@corp.example", "mal@corp.example.evil.com"]);
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_input");
    expect(r.body.error.message).toContain("eve@gmail.com (row 2)");
    expect(r.body.error.message).toContain("mal@corp.example.evil.com (row 4)");
    expect(r.body.error.details).toEqual({
      reason: "outside the allowed recipient domains",
      allowedDomains: ["corp.example", "corp-eu.example"],
      count: 2,
      first: [
        { row: 2, email: "eve@gmail.com" },
        { row: 4, email: "mal@corp.example.evil.com" },
      ],
    });
    expect(await audience("kept-json")).toEqual(before);
    expect(await a.rt.redis.zrange(keys.audience("kept-json"), 0, "-1")).toEqual(team.slice().sort());
    expect(await a.rt.audiences.domains("kept-json")).toEqual(domainsBefore);
    expect(await scratchKeys()).toEqual([]);
  });

  it("refuses a CSV upload with an address in a subdomain (exact match only), and keeps the previous version", async () => {
    expect((await uploadCsv("kept-csv", "email\nann@corp.example\n")).status).toBe(201);
    const before = await audience("kept-csv");
    const r = await uploadCsv("kept-csv", "email,name\nann@corp.example,Ann\nbo@eu.corp.example,Bo\n");
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain("bo@eu.corp.example (row 2)");
    expect(r.body.error.details).toMatchObject({ count: 1, first: [{ row: 2, email: "bo@eu.corp.example" }] });
    expect(await audience("kept-csv")).toEqual(before);
    expect(await a.rt.redis.zrange(keys.audience("kept-csv"), 0, "-1")).toEqual(["ann@corp.example"]);
    expect(await scratchKeys()).toEqual([]);
  });

  it("names the first 20 addresses outside and counts them all, across chunks, creating nothing", async () => {
    // 3,000 rows (three chunks), every 60th outside: the first is in the first chunk, the rest after it.
    const rows = Array.from({ length: 3000 }, (_, i) => (i % 60 === 59 ? `out${i}@elsewhere.example` : `p${i}@corp.example`));
    const r = await uploadCsv("never-made", ["email", ...rows].join("\n"));
    expect(r.status).toBe(400);
    expect(r.body.error.details.count).toBe(50);
    expect(r.body.error.details.first).toHaveLength(20);
    expect(r.body.error.details.first[0]).toEqual({ row: 60, email: "out59@elsewhere.example" });
    expect(r.body.error.details.first[19]).toEqual({ row: 1200, email: "out1199@elsewhere.example" });
    expect(r.body.error.message).toMatch(/^50 rows have addresses outside the allowed recipient domains \(corp\.example, corp-eu\.example\): out59@elsewhere\.example \(row 60\), .* and 45 more\. Nothing was changed\.$/);
    expect((await a.call("author", "GET", "/api/audiences/never-made")).status).toBe(404);
    expect(await a.rt.redis.exists(keys.audience("never-made"), keys.audienceDomains("never-made"))).toBe(0);
    expect(await scratchKeys()).toEqual([]);
  });

  it("records the recipients by domain, each address once, and replaces them with the audience", async () => {
    expect((await upload("by-domain", ["ann@corp.example", "ANN@corp.example", "ben@corp.example", "cy@corp-eu.example", "dee@corp.example"])).status).toBe(201);
    expect(await a.rt.audiences.domains("by-domain")).toEqual([
      { domain: "corp.example", count: 3 },
      { domain: "corp-eu.example", count: 1 },
    ]);
    expect(await a.rt.redis.ttl(keys.audienceDomains("by-domain"))).toBe(-1); // the scratch TTL must not survive the rename

    expect((await uploadCsv("by-domain", "email\nx@corp-eu.example\ny@corp-eu.example\n")).status).toBe(201);
    expect(await a.rt.audiences.domains("by-domain")).toEqual([{ domain: "corp-eu.example", count: 2 }]);
    expect(await a.rt.redis.hgetall(keys.audienceDomains("by-domain"))).toEqual({ "corp-eu.example": "2" });
    expect(await a.rt.redis.ttl(keys.audienceDomains("by-domain"))).toBe(-1);
    expect(await a.rt.audiences.domains("no-such-audience")).toEqual([]);
    expect(await scratchKeys()).toEqual([]);
  });

  it("keeps at most 200 domains per audience, counting the rest together", async () => {
    // Without the setting (as an Airlock without ALLOWED_RECIPIENT_DOMAINS would): 250 domains.
    const open = new AudienceStore({ redis: a.rt.redis, clock: a.clock, chunkSize: 100 });
    const records = Array.from({ length: 250 }, (_, i) => ({ email: `p@d${String(i).padStart(3, "0")}.example` }));
    await open.replaceFromRecords("many-domains", "admin@corp.example", [...records, { email: "q@d000.example" }]);
    const domains = await open.domains("many-domains");
    expect(domains).toHaveLength(201);
    expect(domains[0]).toEqual({ domain: "(other domains)", count: 50 });
    expect(domains[1]).toEqual({ domain: "d000.example", count: 2 });
    expect(domains.reduce((n, d) => n + d.count, 0)).toBe(251);
  });
});

describe("submit", () => {
  beforeAll(async () => {
    expect((await upload("team", team)).status).toBe(201);
  });

  it("refuses explicit addresses outside, naming each by its path, and creates no message", async () => {
    const before = await messageCount();
    const r = await a.call("author", "POST", "/api/messages", message({ lists: ["team"], addresses: ["ann@corp.example", "Eve@Gmail.com", "bo@eu.corp.example"] }));
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe("invalid_input");
    expect(r.body.error.message).toContain("2 addresses are outside the allowed recipient domains: eve@gmail.com, bo@eu.corp.example");
    expect(r.body.error.details).toEqual([
      { path: ["body", "audience", "addresses", 1], message: "eve@gmail.com is outside the allowed recipient domains" },
      { path: ["body", "audience", "addresses", 2], message: "bo@eu.corp.example is outside the allowed recipient domains" },
    ]);
    expect(await messageCount()).toBe(before);
  });

  it("names at most 20 explicit addresses, then counts the rest", async () => {
    const addresses = Array.from({ length: 25 }, (_, i) => `p${i}@outside.example`);
    const r = await a.call("author", "POST", "/api/messages", message({ addresses }));
    expect(r.status).toBe(400);
    expect(r.body.error.details).toHaveLength(21);
    expect(r.body.error.details[19].path).toEqual(["body", "audience", "addresses", 19]);
    expect(r.body.error.details[20]).toEqual({ path: ["body", "audience", "addresses"], message: "and 5 more outside the allowed recipient domains" });
    expect(r.body.error.message).toContain("25 addresses are outside");
  });

  it("refuses an edit adding an address outside, keeping the revision", async () => {
    const created = await a.call("author", "POST", "/api/messages", message({ lists: ["team"] }));
    expect(created.status).toBe(201);
    const r = await a.call("author", "PUT", `/api/messages/${created.body.id}`, message({ lists: ["team"], addresses: ["eve@gmail.com"] }));
    expect(r.status).toBe(400);
    expect(r.body.error.details).toEqual([{ path: ["body", "audience", "addresses", 0], message: "eve@gmail.com is outside the allowed recipient domains" }]);
    expect((await a.call("author", "GET", `/api/messages/${created.body.id}`)).body).toMatchObject({ revision: 1, recipientCount: team.length, state: "pending_approval" });
    expect((await a.call("author", "POST", `/api/messages/${created.body.id}/withdraw`, {})).status).toBe(200);
  });

  it("refuses a list uploaded before the setting that reaches outside, and one with no domains recorded", async () => {
    // Uploaded as an Airlock without ALLOWED_RECIPIENT_DOMAINS would, on the same Redis.
    const open = new AudienceStore({ redis: a.rt.redis, clock: a.clock });
    await open.replaceFromRecords("legacy", "admin@corp.example", [{ email: "ann@corp.example" }, { email: "eve@gmail.com" }, { email: "fay@gmail.com" }]);
    await open.replaceFromRecords("unrecorded", "admin@corp.example", [{ email: "ann@corp.example" }]);
    await a.rt.redis.del(keys.audienceDomains("unrecorded")); // as an audience uploaded before domains were recorded
    const before = await messageCount();

    const r = await a.call("author", "POST", "/api/messages", message({ lists: ["team", "legacy", "unrecorded"] }));
    expect(r.status).toBe(400);
    expect(r.body.error.message).toContain("audience legacy has 2 recipients outside the allowed recipient domains (gmail.com: 2)");
    expect(r.body.error.details).toEqual([
      { path: ["body", "audience", "lists", 1], message: "audience legacy has 2 recipients outside the allowed recipient domains (gmail.com: 2)" },
      { path: ["body", "audience", "lists", 2], message: expect.stringContaining("audience unrecorded has no record of its recipients' domains") },
    ]);
    expect(await messageCount()).toBe(before);
  });

  it("accepts lists and addresses all inside, including a list uploaded before the setting", async () => {
    const open = new AudienceStore({ redis: a.rt.redis, clock: a.clock });
    await open.replaceFromRecords("legacy-inside", "admin@corp.example", [{ email: "gus@corp.example" }]);
    const before = await messageCount();
    const r = await a.call("author", "POST", "/api/messages", message({ lists: ["team", "legacy-inside"], addresses: ["Zed@Corp-EU.example", "ann@corp.example"] }));
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ state: "pending_approval", recipientCount: team.length + 2 });
    expect(await messageCount()).toBe(before + 1);
    // An unknown list is still the store's refusal, not a domain one.
    const unknown = await a.call("author", "POST", "/api/messages", message({ lists: ["no-such-list"] }));
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toContain("audience no-such-list does not exist");
  });
});

describe("the fan-out's last line", () => {
  // Staged (promise 8 in the early waves' path too: all three are the canary of so small an audience).
  it.each([false, true])("never hands SMTP an outside address that got into a frozen set anyway: recorded failed with the reason (staged: %s)", async (waves) => {
    const m = (await a.call("author", "POST", "/api/messages", { ...message({ addresses: ["ann@corp.example", "ben@corp.example"] }), ...(waves ? { waves } : {}) })).body;
    expect(m.waves !== null).toBe(waves);
    // As if a process configured without the setting had replaced the list before the freeze.
    await a.rt.redis.zadd(keys.recipients(m.id), 0, "eve@gmail.com");
    await a.rt.redis.hset(keys.message(m.id), "recipientCount", "3");
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest })).status).toBe(200);
    await a.until("sent", async () => (await a.call("ops", "GET", `/api/messages/${m.id}`)).body.state === "sent");
    const got = a.sink.received.filter((r) => r.mail.messageId === m.messageId).flatMap((r) => r.to);
    expect(got.sort()).toEqual(["ann@corp.example", "ben@corp.example"]);
    const failed = (await a.call("ops", "GET", `/api/messages/${m.id}/recipients?status=failed`)).body.items;
    expect(failed).toEqual([expect.objectContaining({ email: "eve@gmail.com", reply: "not sent: outside ALLOWED_RECIPIENT_DOMAINS" })]);
  });
});
