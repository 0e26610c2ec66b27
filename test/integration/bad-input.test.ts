/**
 * Bad input, fuzzed: every route of the spec's table (and the links and dashboard forms) gets random
 * and malicious requests — random JSON, prototype keys, wrong content types, huge and truncated
 * bodies, invalid UTF-8, control characters and CRLF in headers-to-be, quoted-local-part tricks,
 * 0 and 1,000,001 recipients, doubled query parameters, absurd ids and cursors. The answer is always
 * a 4xx with the spec's error body (a page on /links and dashboard pages), never a 5xx; the process
 * keeps serving; and a refused submission creates nothing.
 *
 * Every generated request reaches the server. Requests with a header value that fetch refuses to
 * send (control characters, bare CR or LF, characters beyond Latin-1) are generated as such and go
 * over a raw socket, byte for byte; any exception on the client side (fetch refusing a request, a
 * connection reset, no answer) fails the property: it means the input never got a server's answer.
 */
import { connect } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAirlock, tokenOf, type TestAirlock, type UserKey } from "../support/airlock.js";

const SEED = Number(process.env.FUZZ_SEED ?? 20261122);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);

let a: TestAirlock;
let messageId: string;
let sessionCookie: string;
const stats = { cases: 0, raw: 0, status4xx: 0, status2xx: 0, status5xx: 0, created: 0 };

beforeAll(async () => {
  a = await startAirlock({ HOLD_MIN_SECONDS: "3600" });
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: [{ email: "ann@corp.example" }] })).status).toBe(201);
  messageId = (await a.call("author", "POST", "/api/messages", { subject: "Target", text: "x", audience: { lists: ["team"] } })).body.id;
  const res = await fetch(`${a.url}/signin`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" }, body: new URLSearchParams({ token: tokenOf("ops") }) });
  sessionCookie = (res.headers.get("set-cookie") ?? "").split(";")[0]!;
});
afterAll(async () => {
  process.stdout.write(`bad-input fuzz: seed ${SEED}, ${stats.cases} cases (${stats.raw} over a raw socket), 2xx ${stats.status2xx}, 4xx ${stats.status4xx}, 5xx ${stats.status5xx}, messages created ${stats.created}\n`);
  await a?.stop();
});

const nasty = [
  "a\r\nBcc: evil@x.com",
  '"a,b@evil.com"@corp.com',
  "a@corp.com\nX-Injected: 1",
  "\u0000",
  "\u2028\u2029",
  "<script>alert(1)</script>",
  "../../etc/passwd",
  "%00",
  "𝕬𝖎𝖗𝖑𝖔𝖈𝖐",
  "\ud800", // a lone surrogate
  "=?utf-8?b?PHNjcmlwdD4=?=",
  "a".repeat(70_000),
  "__proto__",
  "constructor",
];
const nastyString = fc.oneof(fc.string(), fc.constantFrom(...nasty), fc.string({ unit: "binary", maxLength: 50 }));
const protoPollution = fc.constantFrom('{"__proto__":{"admin":true},"subject":"x"}', '{"constructor":{"prototype":{"x":1}}}', '{"audience":{"__proto__":{"lists":["team"]}}}');

/** A message body that is nearly right, with one or more fields wrong. */
const messageBody = fc.record(
  {
    subject: fc.oneof(nastyString, fc.constant("Hello")),
    text: fc.oneof(nastyString, fc.constant("Body"), fc.integer()),
    html: fc.oneof(nastyString, fc.constant(null)),
    from: fc.oneof(nastyString, fc.constant("Other <other@corp.example>")),
    audience: fc.oneof(
      fc.record({ lists: fc.array(fc.oneof(nastyString, fc.constant("team"), fc.constant("missing")), { maxLength: 3 }) }, { requiredKeys: [] }),
      fc.record({ addresses: fc.array(fc.oneof(nastyString, fc.emailAddress()), { maxLength: 5 }) }, { requiredKeys: [] }),
      fc.constant({ addresses: [] }),
      fc.constant({ lists: [] }),
      fc.jsonValue(),
    ),
    holdMinutes: fc.oneof(fc.double(), fc.integer(), fc.constant(-1), fc.constant(1e308), nastyString),
    sendAt: fc.oneof(nastyString, fc.date({ noInvalidDate: true }).map((d) => d.toISOString()), fc.constant("2026-13-45T99:99:99Z")),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
);

const id = fc.oneof(fc.constant(""), fc.constant("0"), fc.constant("-1"), fc.constant("1e3"), fc.constant("99999999999999999999"), fc.constant("%2e%2e"), fc.string({ maxLength: 20 }).map(encodeURIComponent), fc.nat().map(String));
const query = fc.oneof(
  fc.constant("state=sent&state=sending"),
  fc.constant("limit=1&limit=2"),
  fc.constant("limit=0"),
  fc.constant("limit=100000000000"),
  fc.constant("cursor=-5"),
  fc.constant("cursor=abc&cursor=1"),
  fc.constant("status=sent&status=failed"),
  fc.constant("name=a&name=b"),
  fc.constant("__proto__[x]=1"),
  fc.constant("limit[]=1"),
  fc.string({ maxLength: 30 }).map((s) => `state=${encodeURIComponent(s)}`),
);
const contentType = fc.constantFrom("application/json", "application/json; charset=utf-16", "application/json; charset=latin1", "text/plain", "text/csv", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "", "application/json; charset=unknown-8");
const body = fc.oneof(
  messageBody.map((b) => JSON.stringify(b)),
  fc.jsonValue().map((v) => JSON.stringify(v)),
  protoPollution,
  fc.constantFrom("", "{", '{"subject":', "null", "[]", '"str"', "1e999999", "{}".repeat(10)),
  fc.string({ unit: "binary", maxLength: 200 }),
  fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.concat([Buffer.from('{"subject":"'), Buffer.from(u), Buffer.from([0xc3, 0x28, 0xff]), Buffer.from('"}')])), // invalid UTF-8
);
const user = fc.constantFrom<UserKey | null | "cookie" | "bad">(null, "author", "author2", "approver1", "ops", "admin", "authorApprover", "cookie", "bad");
/** Credentials that are wrong but that any HTTP client can send (fetch sends them). */
const badAuthorization = fc.oneof(
  fc.constantFrom("Bearer nope", "Bearer", "Bearer ", "Basic Zm9vOmJhcg==", "bearer test-token-author-0123456789abcdef", `Bearer ${tokenOf("author")} extra`, `Bearer ${"x".repeat(9000)}`, "Bearer ÿþ"),
  fc.string({ maxLength: 40 }).map((t) => `Bearer ${t}`),
);
/**
 * A header value no well-behaved client sends and fetch refuses to (control characters, bare CR or
 * LF, characters beyond Latin-1, sent as UTF-8): such a request goes over a raw socket.
 */
const oddHeader = fc.record({
  name: fc.constantFrom("authorization", "cookie", "content-type", "accept", "x-forwarded-for", "sec-fetch-site"),
  value: fc.oneof(
    fc.constantFrom("Bearer \u0001nope", "Bearer \u0000", "a\u007fb", "\u001b[31mred", "Bearer 𝕬𝖎𝖗𝖑𝖔𝖈𝖐", "application/json\u2028", "a\rb", "a\nX-Injected: 1", "\u0085", "Bearer \ud800"),
    fc.tuple(fc.string({ maxLength: 10 }), fc.integer({ min: 0, max: 31 }).filter((c) => c !== 9), fc.string({ maxLength: 10 })).map(([x, c, y]) => `${x}${String.fromCharCode(c)}${y}`),
  ),
});

type User = UserKey | null | "cookie" | "bad";
type Req = { method: string; path: string; body?: string | Buffer; contentType?: string; user: User; bad: string; odd: { name: string; value: string } | null; page: boolean };
const requestShape = fc.oneof(
  fc.record({ method: fc.constant("POST"), path: fc.constant("/api/messages"), body, contentType, user, page: fc.constant(false) }),
  fc.record({ method: fc.constant("GET"), path: query.map((q) => `/api/messages?${q}`), user, page: fc.constant(false) }),
  fc.record({ method: fc.constantFrom("GET", "PUT", "DELETE", "PATCH"), path: id.map((i) => `/api/messages/${i}`), body, contentType, user, page: fc.constant(false) }),
  fc.record({ method: fc.constant("PUT"), path: fc.constant("/api/messages/TARGET"), body, contentType, user, page: fc.constant(false) }),
  fc.record({ method: fc.constant("POST"), path: fc.tuple(fc.oneof(id, fc.constant("TARGET")), fc.constantFrom("approve", "reject", "withdraw", "recall", "pause", "resume")).map(([i, act]) => `/api/messages/${i}/${act}`), body, contentType, user, page: fc.constant(false) }),
  fc.record({ method: fc.constant("GET"), path: fc.tuple(fc.oneof(id, fc.constant("TARGET")), fc.constantFrom("recipients", "events", "preview"), query).map(([i, what, q]) => `/api/messages/${i}/${what}?${q}`), user, page: fc.constant(false) }),
  fc.record({ method: fc.constant("POST"), path: fc.oneof(fc.constant("/api/audiences"), query.map((q) => `/api/audiences?${q}`)), body, contentType, user, page: fc.constant(false) }),
  fc.record({ method: fc.constant("GET"), path: fc.oneof(fc.constant("/api/audiences"), id.map((i) => `/api/audiences/${i}`)), user, page: fc.constant(false) }),
  fc.record({ method: fc.constantFrom("GET", "HEAD", "POST"), path: fc.string({ maxLength: 120 }).map((t) => `/links/${encodeURIComponent(t)}`), body, contentType, user, page: fc.constant(true) }),
  fc.record({ method: fc.constant("POST"), path: fc.constantFrom("/signin", "/signout", "/messages/TARGET/recall"), body, contentType, user, page: fc.constant(true) }),
  fc.record({ method: fc.constant("GET"), path: fc.oneof(query.map((q) => `/history?${q}&q=${encodeURIComponent("\u0000%")}`), id.map((i) => `/messages/${i}?status=x&cursor=-1`)), user, page: fc.constant(true) }),
);
// One case in eight carries a header fetch cannot send (and so goes over a raw socket).
const request: fc.Arbitrary<Req> = fc
  .tuple(requestShape, badAuthorization, fc.oneof({ weight: 7, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: oddHeader }))
  .map(([r, bad, odd]): Req => ({ ...r, bad, odd }));

type Answer = { status: number; text: string; type: string };

function headersOf(r: Req): Record<string, string> {
  const headers: Record<string, string> = { "sec-fetch-site": "same-origin" };
  if (r.user === "cookie") headers.cookie = sessionCookie;
  else if (r.user === "bad") headers.authorization = r.bad;
  else if (r.user) headers.authorization = `Bearer ${tokenOf(r.user)}`;
  if (r.contentType) headers["content-type"] = r.contentType;
  if (r.odd) headers[r.odd.name] = r.odd.value;
  return headers;
}

/**
 * Sends one request and answers what the server answered. Any client-side exception is a failure
 * of the test, never an answer: the request did not reach the server, or its answer did not come back.
 */
async function send(r: Req): Promise<Answer> {
  const headers = headersOf(r);
  const path = r.path.replace("TARGET", messageId);
  const hasBody = r.body !== undefined && r.method !== "GET" && r.method !== "HEAD";
  const payload = hasBody ? (typeof r.body === "string" ? Buffer.from(r.body, "utf8") : r.body!) : undefined;
  if (r.odd) {
    stats.raw++;
    return sendRaw(r.method, path, headers, payload);
  }
  let res: Response;
  let text: string;
  try {
    res = await fetch(a.url + path, { method: r.method, headers, body: payload ? new Uint8Array(payload) : undefined, redirect: "manual" });
    text = await res.text();
  } catch (e) {
    const cause = (e as { cause?: unknown }).cause;
    throw new Error(`client-side error, the request got no answer from the server (${r.method} ${path}, headers ${JSON.stringify(headers).slice(0, 300)}): ${String(e)}${cause ? ` (cause: ${String(cause)})` : ""}`);
  }
  return { status: res.status, text, type: res.headers.get("content-type") ?? "" };
}

/**
 * The request byte for byte over a socket (`Connection: close`), header values as UTF-8, and the
 * answer read to the end of the connection. For what fetch will not send.
 */
function sendRaw(method: string, path: string, headers: Record<string, string>, body: Buffer | undefined): Promise<Answer> {
  const { hostname, port, host } = new URL(a.url);
  const target = path.replace(/[^\x21-\x7e]/gu, (c) => encodeURIComponent(c));
  const head = [`${method} ${target} HTTP/1.1`, `host: ${host}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), ...(body ? [`content-length: ${body.length}`] : []), "connection: close", "", ""].join("\r\n");
  const bytes = Buffer.concat([Buffer.from(head, "utf8"), body ?? Buffer.alloc(0)]);
  const what = `${method} ${target} with ${JSON.stringify(headers).slice(0, 300)} over a raw socket`;
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(port), hostname === "localhost" ? "127.0.0.1" : hostname);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within 15 s: ${what}`));
    }, 15_000);
    const done = () => {
      clearTimeout(timer);
      try {
        resolve(parseAnswer(Buffer.concat(chunks), method));
      } catch (e) {
        reject(new Error(`${(e as Error).message}: ${what}`));
      }
    };
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("end", done);
    // The server may answer and close before it has read the whole body (EPIPE, ECONNRESET): the answer counts if it came.
    socket.on("error", (e) => (chunks.length > 0 ? done() : (clearTimeout(timer), reject(new Error(`${e.message}: ${what}`)))));
    socket.write(bytes);
  });
}

function parseAnswer(raw: Buffer, method: string): Answer {
  const end = raw.indexOf("\r\n\r\n");
  if (end < 0) throw new Error(`no complete HTTP answer (${raw.length} bytes: ${JSON.stringify(raw.subarray(0, 200).toString("latin1"))})`);
  const [statusLine, ...lines] = raw.subarray(0, end).toString("latin1").split("\r\n");
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? "");
  if (!m) throw new Error(`not an HTTP status line: ${JSON.stringify(statusLine)}`);
  const header = (name: string) => lines.find((l) => l.toLowerCase().startsWith(`${name}:`))?.slice(name.length + 1).trim();
  let body = method === "HEAD" ? Buffer.alloc(0) : raw.subarray(end + 4);
  if (/chunked/i.test(header("transfer-encoding") ?? "")) {
    const parts: Buffer[] = [];
    for (let at = 0; ; ) {
      const eol = body.indexOf("\r\n", at);
      const size = parseInt(body.subarray(at, eol).toString("latin1"), 16);
      if (eol < 0 || !(size > 0)) break;
      parts.push(body.subarray(eol + 2, eol + 2 + size));
      at = eol + 2 + size + 2;
    }
    body = Buffer.concat(parts);
  }
  return { status: Number(m[1]), text: body.toString("utf8"), type: header("content-type") ?? "" };
}

async function messageCount(): Promise<number> {
  return a.rt.redis.zcard("{airlock}:messages");
}

it("answers every malformed request with a 4xx and the spec's error body, never a 5xx", async () => {
  const before = await messageCount();
  await fc.assert(
    fc.asyncProperty(request, async (r) => {
      const res = await send(r);
      stats.cases++;
      if (res.status >= 500) stats.status5xx++;
      else if (res.status >= 400) stats.status4xx++;
      else stats.status2xx++;
      if (r.path === "/api/messages" && res.status === 201) stats.created++;
      const what = `${r.method} ${r.path}${r.odd ? ` (raw socket, ${r.odd.name}: ${JSON.stringify(r.odd.value)})` : ""} -> ${res.status} ${JSON.stringify(res.text.slice(0, 300))}`;
      expect(res.status, what).toBeLessThan(500);
      if (res.status >= 400 && r.method !== "HEAD") {
        if (r.path.startsWith("/api/") && !r.page) {
          expect(res.type, what).toMatch(/^application\/json/);
          const parsed = JSON.parse(res.text) as { error?: { code?: unknown; message?: unknown } };
          expect(typeof parsed.error?.code, what).toBe("string");
          expect(typeof parsed.error?.message, what).toBe("string");
        } else {
          expect(res.type, what).toMatch(/text\/html|application\/json/);
        }
      }
    }),
    { seed: SEED, numRuns: RUNS, endOnFailure: true },
  );
  // Still serving, and nothing was created but by the requests answered 201.
  expect((await fetch(`${a.url}/healthz`)).status).toBe(200);
  expect((await messageCount()) - before).toBe(stats.created);
  expect(stats.cases).toBeGreaterThanOrEqual(RUNS);
  expect(stats.status4xx).toBeGreaterThan(RUNS / 2); // the generators do produce bad input
  expect(stats.raw).toBeGreaterThan(RUNS / 20); // and headers no well-behaved client sends
});

it("refuses the named attacks with the right status and field", async () => {
  const cases: Array<[string, unknown, number, string]> = [
    ["CRLF in the subject", { subject: "Hi\r\nBcc: evil@x.com", text: "x", audience: { lists: ["team"] } }, 400, "subject"],
    ["CRLF in the sender", { subject: "Hi", text: "x", from: "a@corp.example\r\nBcc: e@x.com", audience: { lists: ["team"] } }, 400, "from"],
    ["a quoted local part", { subject: "Hi", text: "x", audience: { addresses: ['"a,b@evil.com"@corp.com'] } }, 400, "addresses"],
    ["a newline in an address", { subject: "Hi", text: "x", audience: { addresses: ["a@corp.com\nBcc: x@y.z"] } }, 400, "addresses"],
    ["0 recipients", { subject: "Hi", text: "x", audience: { addresses: [] } }, 400, "audience"],
    ["an unknown key", { subject: "Hi", text: "x", audience: { lists: ["team"] }, admin: true }, 400, "body"],
  ];
  const before = await messageCount();
  for (const [what, b, status, field] of cases) {
    const res = await a.call("author", "POST", "/api/messages", b);
    expect(res.status, what).toBe(status);
    expect(res.body.error.code, what).toBe("invalid_input");
    expect(JSON.stringify(res.body.error.details ?? res.body.error.message), what).toContain(field);
  }
  // 1,000,001 explicit recipients: a body far over the limit, refused before it is parsed.
  const huge = JSON.stringify({ subject: "Hi", text: "x", audience: { addresses: Array.from({ length: 1_000_001 }, (_, i) => `p${i}@corp.example`) } });
  const tooLarge = await a.call("author", "POST", "/api/messages", huge);
  expect(tooLarge.status).toBe(413);
  expect(tooLarge.body.error.code).toBe("too_large");
  // Invalid UTF-8 and a wrong content type.
  const bytes = Buffer.concat([Buffer.from('{"subject":"'), Buffer.from([0xc3, 0x28, 0xa0, 0xa1]), Buffer.from('","text":"x","audience":{"lists":["team"]}}')]);
  const utf8 = await fetch(`${a.url}/api/messages`, { method: "POST", headers: { authorization: `Bearer ${tokenOf("author")}`, "content-type": "application/json" }, body: new Uint8Array(bytes) });
  expect(utf8.status).toBe(400);
  expect(((await utf8.json()) as { error: { message: string } }).error.message).toContain("not valid UTF-8");
  expect((await a.call("author", "POST", "/api/messages", "subject=x", { "content-type": "application/x-www-form-urlencoded" })).status).toBe(415);
  // __proto__ does not pollute: the body is refused as an unknown key and no object gained a property.
  const proto = await a.call("author", "POST", "/api/messages", '{"__proto__":{"polluted":true},"subject":"x","text":"x","audience":{"lists":["team"]}}');
  expect(proto.status).toBeLessThan(500);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect((await messageCount()) - before).toBe(proto.status === 201 ? 1 : 0);
});

it("answers a request its HTTP parser refuses (a control character or a bare LF in a header) with a 4xx and the error body too", async () => {
  // What fetch will not send, a raw socket does: the server, not the client, must refuse it, and say why as it says everything else.
  for (const [name, value] of [["authorization", "Bearer \u0001nope"], ["content-type", "application/json\u0000"], ["cookie", "a\nX-Injected: 1"]] as const) {
    const res = await sendRaw("GET", "/api/messages", { authorization: `Bearer ${tokenOf("author")}`, [name]: value }, undefined);
    const what = `${name}: ${JSON.stringify(value)} -> ${res.status} ${JSON.stringify(res.type)} ${JSON.stringify(res.text.slice(0, 200))}`;
    expect(res.status, what).toBeGreaterThanOrEqual(400);
    expect(res.status, what).toBeLessThan(500);
    expect(res.type, what).toMatch(/^application\/json/);
    expect(typeof (JSON.parse(res.text) as { error?: { code?: unknown } }).error?.code, what).toBe("string");
  }
  expect((await fetch(`${a.url}/healthz`)).status).toBe(200);
});
