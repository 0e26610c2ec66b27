/**
 * Bad input, fuzzed: every route of the spec's table (and the links and dashboard forms) gets random
 * and malicious requests — random JSON, prototype keys, wrong content types, huge and truncated
 * bodies, invalid UTF-8, control characters and CRLF in headers-to-be, quoted-local-part tricks,
 * 0 and 1,000,001 recipients, doubled query parameters, absurd ids and cursors. The answer is always
 * a 4xx with the spec's error body (a page on /links and dashboard pages), never a 5xx; the process
 * keeps serving; and a refused submission creates nothing.
 */
import fc from "fast-check";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startAirlock, tokenOf, type TestAirlock, type UserKey } from "../support/airlock.js";

const SEED = Number(process.env.FUZZ_SEED ?? 20261122);
const RUNS = Number(process.env.FUZZ_RUNS ?? 1500);

let a: TestAirlock;
let messageId: string;
let sessionCookie: string;
const stats = { cases: 0, status4xx: 0, status2xx: 0, status5xx: 0, created: 0 };

beforeAll(async () => {
  a = await startAirlock({ HOLD_MIN_SECONDS: "3600" });
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: [{ email: "ann@corp.example" }] })).status).toBe(201);
  messageId = (await a.call("author", "POST", "/api/messages", { subject: "Target", text: "x", audience: { lists: ["team"] } })).body.id;
  const res = await fetch(`${a.url}/signin`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", "sec-fetch-site": "same-origin" }, body: new URLSearchParams({ token: tokenOf("ops") }) });
  sessionCookie = (res.headers.get("set-cookie") ?? "").split(";")[0]!;
});
afterAll(async () => {
  process.stdout.write(`bad-input fuzz: seed ${SEED}, ${stats.cases} cases, 2xx ${stats.status2xx}, 4xx ${stats.status4xx}, 5xx ${stats.status5xx}, messages created ${stats.created}\n`);
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

type Req = { method: string; path: string; body?: string | Buffer; contentType?: string; user: UserKey | null | "cookie" | "bad"; page: boolean };
const request: fc.Arbitrary<Req> = fc.oneof(
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

async function send(r: Req): Promise<{ status: number; text: string; type: string }> {
  const headers: Record<string, string> = { "sec-fetch-site": "same-origin" };
  if (r.user === "cookie") headers.cookie = sessionCookie;
  else if (r.user === "bad") headers.authorization = "Bearer \u0001nope";
  else if (r.user) headers.authorization = `Bearer ${tokenOf(r.user)}`;
  if (r.contentType) headers["content-type"] = r.contentType;
  const hasBody = r.body !== undefined && r.method !== "GET" && r.method !== "HEAD";
  let res: Response;
  try {
    res = await fetch(a.url + r.path.replace("TARGET", messageId), { method: r.method, headers, body: hasBody ? (typeof r.body === "string" ? r.body : new Uint8Array(r.body!)) : undefined, redirect: "manual" });
  } catch (e) {
    // fetch refuses some header values itself (e.g. a control character): that request never left.
    if (e instanceof TypeError) return { status: 400, text: "", type: "client-refused" };
    throw e;
  }
  return { status: res.status, text: await res.text(), type: res.headers.get("content-type") ?? "" };
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
      expect(res.status, `${r.method} ${r.path} -> ${res.status} ${res.text.slice(0, 300)}`).toBeLessThan(500);
      if (res.status >= 400 && res.type !== "client-refused" && r.method !== "HEAD") {
        if (r.path.startsWith("/api/") && !r.page) {
          const parsed = JSON.parse(res.text) as { error?: { code?: unknown; message?: unknown } };
          expect(typeof parsed.error?.code, res.text).toBe("string");
          expect(typeof parsed.error?.message, res.text).toBe("string");
        } else {
          expect(res.type, `${r.method} ${r.path}`).toMatch(/text\/html|application\/json/);
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
