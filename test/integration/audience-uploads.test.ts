/** POST /api/audiences over HTTP: both bodies are streamed, so the route itself checks what a body parser would. */
import { request } from "node:http";
import { Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, expect, it } from "vitest";
import { PREFIX } from "../../src/store/keys.js";
import { startAirlock, tokenOf, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const logged: Array<{ level: number; msg: string }> = [];
beforeAll(async () => {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString("utf8").split("\n")) if (l.trim()) logged.push(JSON.parse(l) as { level: number; msg: string });
      done();
    },
  });
  a = await startAirlock({}, { logger: pino({ level: "info" }, sink) });
});
afterAll(async () => a?.stop());

/** Sends the bytes as they are (the shared helper JSON-encodes anything that is not a string). */
async function raw(path: string, body: Buffer | string, headers: Record<string, string>): Promise<{ status: number; body: any }> {
  const r = await fetch(a.url + path, { method: "POST", headers: { authorization: `Bearer ${tokenOf("author")}`, ...headers }, body: typeof body === "string" ? body : new Uint8Array(body) });
  return { status: r.status, body: await r.json() };
}

const size = async (name: string) => (await a.call("author", "GET", `/api/audiences/${name}`)).body.size;

it("takes a JSON body with its name after the recipients", async () => {
  const r = await a.call("author", "POST", "/api/audiences", '{"recipients":[{"email":"Ann@Corp.example"},{"email":"ben@corp.example","name":null}],"name":"name-last"}');
  expect(r.status).toBe(201);
  expect(r.body).toMatchObject({ name: "name-last", size: 2, by: "author@corp.example" });
});

it("refuses a bad recipient with 400 naming its path, and keeps the previous audience", async () => {
  expect((await a.call("author", "POST", "/api/audiences", { name: "kept", recipients: [{ email: "ann@corp.example" }] })).status).toBe(201);
  const r = await a.call("author", "POST", "/api/audiences", { name: "kept", recipients: [{ email: "ben@corp.example" }, { email: "cy@corp.example", role: "boss" }] });
  expect(r.status).toBe(400);
  expect(r.body.error).toMatchObject({ code: "invalid_input", details: { path: ["recipients", 1, "role"] } });
  expect(r.body.error.message).toContain('unknown key "role"');
  const bad = await a.call("author", "POST", "/api/audiences", { name: "kept", recipients: [{ email: "not an address" }] });
  expect(bad.status).toBe(400);
  expect(bad.body.error.details).toMatchObject({ row: 1 });
  expect(await size("kept")).toBe(1);
});

it("answers a large upload refused early with its 400, not a dropped connection", async () => {
  // ~8 MB: far more than the socket buffers, so the server answers while the client is still sending.
  const rows = Array.from({ length: 200_000 }, (_, i) => `{"email":"p${i}@corp.example"}`);
  rows[10] = '{"email":"p10@corp.example","salary":1}';
  const r = await raw("/api/audiences", `{"name":"early","recipients":[${rows.join(",")}]}`, { "content-type": "application/json" });
  expect(r.status).toBe(400);
  expect(r.body.error.details).toEqual({ path: ["recipients", 10, "salary"] });
  expect((await a.call("author", "GET", "/api/audiences/early")).status).toBe(404);
});

it("refuses compressed bodies and other charsets with 415, for JSON and CSV", async () => {
  const json = JSON.stringify({ name: "enc", recipients: [{ email: "ann@corp.example" }] });
  const gz = await raw("/api/audiences", gzipSync(json), { "content-type": "application/json", "content-encoding": "gzip" });
  expect(gz.status).toBe(415);
  expect(gz.body.error.message).toContain("content encoding");
  const latin1 = await a.call("author", "POST", "/api/audiences", json, { "content-type": "application/json; charset=latin1" });
  expect(latin1.status).toBe(415);
  expect(latin1.body.error.message).toContain("charset");
  const csv = await raw("/api/audiences?name=enc", gzipSync("email\nann@corp.example\n"), { "content-type": "text/csv", "content-encoding": "gzip" });
  expect(csv.status).toBe(415);
  expect((await a.call("author", "POST", "/api/audiences", json, { "content-type": "application/json; charset=UTF-8" })).status).toBe(201);
});

it("refuses a JSON body that is not valid UTF-8", async () => {
  const body = Buffer.concat([Buffer.from('{"name":"utf","recipients":[{"email":"a@corp.example","name":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}]}')]);
  const r = await raw("/api/audiences", body, { "content-type": "application/json" });
  expect(r.status).toBe(400);
  expect(r.body.error.message).toContain("UTF-8");
});

it.each(["application/json", "text/csv"])("takes a client that goes away mid-upload (%s) as an aborted request, not an error of ours", async (type) => {
  const aborts = () => logged.filter((l) => l.msg.includes("aborted by the client")).length;
  const before = aborts();
  const redis = new Redis(a.redis.url);
  try {
    const uploads = () => redis.keys(`${PREFIX}:upload:*`);
    const u = new URL(`${a.url}/api/audiences?name=gone`);
    const req = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: "POST", headers: { authorization: `Bearer ${tokenOf("author")}`, "content-type": type, "content-length": "10000000" } });
    req.on("error", () => {}); // our own abort
    // 1,500 rows: the first 1,000 reach Redis as one chunk, so the upload is known to be under way.
    const rows = Array.from({ length: 1500 }, (_, i) => (type === "text/csv" ? `g${i}@corp.example\n` : `{"email":"g${i}@corp.example"},`));
    req.write(type === "text/csv" ? "email\n" + rows.join("") : '{"name":"gone","recipients":[' + rows.join(""));
    await a.until("the upload is under way", async () => (await uploads()).length > 0);
    req.destroy();
    await a.until("the abort is logged", async () => aborts() > before);
    expect(logged.filter((l) => l.level >= 50)).toEqual([]);
    await a.until("the scratch keys are dropped", async () => (await uploads()).length === 0);
    expect((await a.call("author", "GET", "/api/audiences/gone")).status).toBe(404);
  } finally {
    redis.disconnect();
  }
});
