/**
 * The authorization matrix: every API route × every kind of caller, with the status the spec (roles
 * table and HTTP API table) asks for. Each state-changing row gets a fresh message, created through
 * the API by its owner and brought to the state the route acts on, so rows do not depend on each
 * other; a refused row must also leave the message (or audience) exactly as it was.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAirlock, type TestAirlock, type UserKey } from "../support/airlock.js";

let a: TestAirlock;

/** Who calls. `author` owns the message under test; `authorApprover` acts on a message of their own. */
const ACTORS = ["none", "badToken", "author", "author2", "approver1", "ops", "admin", "authorApprover"] as const;
type Actor = (typeof ACTORS)[number];
/** The actors holding a valid token, in the column order of the table below. */
type Signed = Exclude<Actor, "none" | "badToken">;
const SIGNED: readonly Signed[] = ["author", "author2", "approver1", "ops", "admin", "authorApprover"];

/** The owner of the message a row acts on: the caller itself for `authorApprover`, else `author`. */
const ownerFor = (actor: Actor): UserKey => (actor === "authorApprover" ? "authorApprover" : "author");

/** A status, or a status with the error code expected in the body. */
type Expect = number | readonly [number, string];

/** What a route acts on: nothing, a shared message (read-only routes), or a fresh message in a given state. */
type Setup = "none" | "shared" | "pending_approval" | "scheduled";

interface Ctx {
  id: string;
  seq: number;
}

interface Route {
  method: string;
  path: string;
  setup: Setup;
  url(c: Ctx): string;
  body?(c: Ctx): unknown;
  /** Statuses for author, author2, approver1, ops, admin, authorApprover (own message). */
  expect: readonly [Expect, Expect, Expect, Expect, Expect, Expect];
  /** Without a token (or with a bad one). */
  anonymous?: number;
  /** The state a successful call leaves the message in. */
  okState?: string;
  sse?: boolean;
  /** Something whose value must not change when the call is refused. */
  probe?(c: Ctx): Promise<unknown>;
}

const draft = (subject: string) => ({ subject, text: "Please read the updated travel policy.", audience: { addresses: ["ann@corp.example", "ben@corp.example"] } });

const messageProbe = async (c: Ctx) => {
  const m = (await a.call("ops", "GET", `/api/messages/${c.id}`)).body;
  return { state: m.state, revision: m.revision, subject: m.subject, approvals: m.approvals, rejection: m.rejection, recall: m.recall, paused: m.paused, updatedAt: m.updatedAt };
};

const SELF = [403, "self_approval"] as const;
const ANY_ROLE = [200, 200, 200, 200, 200, 200] as const;

const ROUTES: Route[] = [
  //                                                                          author author2 approver1 ops  admin authorApprover(own)
  {
    method: "POST", path: "/api/messages", setup: "none",
    url: () => "/api/messages", body: (c) => draft(`Authz create ${c.seq}`),
    expect: [201, 201, 403, 403, 201, 201],
    probe: async () => (await a.call("ops", "GET", "/api/messages?limit=1")).body.items[0]?.id,
  },
  { method: "GET", path: "/api/messages", setup: "none", url: () => "/api/messages?limit=5", expect: ANY_ROLE },
  { method: "GET", path: "/api/messages/:id", setup: "shared", url: (c) => `/api/messages/${c.id}`, expect: ANY_ROLE },
  {
    method: "PUT", path: "/api/messages/:id", setup: "pending_approval",
    url: (c) => `/api/messages/${c.id}`, body: (c) => draft(`Authz edited ${c.seq}`),
    expect: [200, 403, 403, 403, 403, 200], okState: "pending_approval", probe: messageProbe,
  },
  {
    method: "POST", path: "/api/messages/:id/approve", setup: "pending_approval",
    url: (c) => `/api/messages/${c.id}/approve`, body: () => ({ revision: 1, comment: "fine" }),
    expect: [403, 403, 200, 403, 200, SELF], okState: "scheduled", probe: messageProbe,
  },
  {
    method: "POST", path: "/api/messages/:id/reject", setup: "pending_approval",
    url: (c) => `/api/messages/${c.id}/reject`, body: () => ({ reason: "tone" }),
    expect: [403, 403, 200, 403, 200, SELF], okState: "rejected", probe: messageProbe,
  },
  {
    method: "POST", path: "/api/messages/:id/withdraw", setup: "pending_approval",
    url: (c) => `/api/messages/${c.id}/withdraw`,
    expect: [200, 403, 403, 403, 403, 200], okState: "withdrawn", probe: messageProbe,
  },
  {
    method: "POST", path: "/api/messages/:id/recall", setup: "scheduled",
    url: (c) => `/api/messages/${c.id}/recall`, body: () => ({ reason: "sent in error" }),
    expect: [200, 403, 200, 200, 200, 200], okState: "recalled", probe: messageProbe,
  },
  // Ops and admins may pause and resume a fan-out; on a scheduled message there is none, so they get
  // 409 (the state check), everybody else 403 whatever the state. test/integration/pause.test.ts does the rest.
  {
    method: "POST", path: "/api/messages/:id/pause", setup: "scheduled",
    url: (c) => `/api/messages/${c.id}/pause`, body: () => ({ reason: "relay overloaded" }),
    expect: [403, 403, 403, [409, "conflict"], [409, "conflict"], 403], probe: messageProbe,
  },
  {
    method: "POST", path: "/api/messages/:id/resume", setup: "scheduled",
    url: (c) => `/api/messages/${c.id}/resume`,
    expect: [403, 403, 403, [409, "conflict"], [409, "conflict"], 403], probe: messageProbe,
  },
  { method: "GET", path: "/api/messages/:id/recipients", setup: "shared", url: (c) => `/api/messages/${c.id}/recipients`, expect: ANY_ROLE },
  { method: "GET", path: "/api/messages/:id/events", setup: "shared", url: (c) => `/api/messages/${c.id}/events`, expect: ANY_ROLE },
  { method: "GET", path: "/api/messages/:id/preview", setup: "shared", url: (c) => `/api/messages/${c.id}/preview`, expect: ANY_ROLE },
  {
    method: "POST", path: "/api/audiences", setup: "none",
    url: () => "/api/audiences", body: (c) => ({ name: `authz-new-${c.seq}`, recipients: [{ email: "ann@corp.example" }] }),
    expect: [201, 201, 403, 403, 201, 201],
    probe: async (c) => (await a.call("ops", "GET", `/api/audiences/authz-new-${c.seq}`)).status,
  },
  { method: "GET", path: "/api/audiences", setup: "none", url: () => "/api/audiences", expect: ANY_ROLE },
  { method: "GET", path: "/api/audiences/:name", setup: "none", url: () => "/api/audiences/authz-team", expect: ANY_ROLE },
  { method: "GET", path: "/api/audit/verify", setup: "none", url: () => "/api/audit/verify", expect: [403, 403, 403, 403, 200, 403] },
  { method: "GET", path: "/api/stream", setup: "none", url: () => "/api/stream", expect: ANY_ROLE, sse: true },
  // Unauthenticated by the spec: a bad token is ignored, not refused.
  { method: "GET", path: "/healthz", setup: "none", url: () => "/healthz", expect: ANY_ROLE, anonymous: 200 },
  { method: "GET", path: "/readyz", setup: "none", url: () => "/readyz", expect: ANY_ROLE, anonymous: 200 },
];

interface Row {
  route: Route;
  actor: Actor;
  status: number;
  code?: string;
}

const ROWS: Row[] = ROUTES.flatMap((route) =>
  ACTORS.map((actor): Row => {
    if (actor === "none" || actor === "badToken") {
      const status = route.anonymous ?? 401;
      return { route, actor, status, code: status === 401 ? "unauthenticated" : undefined };
    }
    const e = route.expect[SIGNED.indexOf(actor)]!;
    const [status, code] = typeof e === "number" ? [e, e === 403 ? "forbidden" : undefined] : e;
    return { route, actor, status, code };
  }),
);

const shared: Partial<Record<UserKey, string>> = {};
let seq = 0;

/** A new message by `owner`, through the API, in `state`. */
async function messageIn(owner: UserKey, state: "pending_approval" | "scheduled"): Promise<string> {
  const created = await a.call(owner, "POST", "/api/messages", draft(`Authz fixture ${++seq}`));
  expect(created.status).toBe(201);
  const id = created.body.id as string;
  if (state === "scheduled") {
    const approved = await a.call("approver1", "POST", `/api/messages/${id}/approve`, { revision: 1 });
    expect(approved.status).toBe(200);
    expect(approved.body.state).toBe("scheduled");
  }
  return id;
}

/** Calls as `actor`; the SSE route is only opened, checked and aborted. */
async function callAs(actor: Actor, route: Route, c: Ctx): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = actor === "badToken" ? { authorization: "Bearer not-a-token-anybody-holds-0123456789" } : {};
  const user = actor === "none" || actor === "badToken" ? null : actor;
  if (!route.sse) return a.call(user, route.method, route.url(c), route.body?.(c), headers);

  const auth = user ? { authorization: `Bearer test-token-${user}-0123456789abcdef` } : headers;
  const abort = new AbortController();
  try {
    const res = await fetch(a.url + route.url(c), { headers: auth, signal: abort.signal });
    if (res.status === 200) {
      expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
      return { status: 200, body: null };
    }
    return { status: res.status, body: await res.json() };
  } finally {
    abort.abort();
  }
}

beforeAll(async () => {
  // Nothing may release during the test: the hold is an hour, approvals live 72 hours.
  a = await startAirlock({ HOLD_MIN_SECONDS: "3600" });
  expect((await a.call("admin", "POST", "/api/audiences", { name: "authz-team", recipients: [{ email: "ann@corp.example" }] })).status).toBe(201);
  shared.author = await messageIn("author", "scheduled");
  shared.authorApprover = await messageIn("authorApprover", "scheduled");
});
afterAll(async () => a?.stop());

describe("authorization matrix", () => {
  it.each(ROWS.map((r) => [`${r.route.method} ${r.route.path} as ${r.actor} → ${r.status}${r.code ? ` ${r.code}` : ""}`, r] as const))("%s", async (_name, row) => {
    const { route, actor } = row;
    const c: Ctx = { id: "", seq: ++seq };
    if (route.setup === "shared") c.id = shared[ownerFor(actor)]!;
    else if (route.setup !== "none") c.id = await messageIn(ownerFor(actor), route.setup);

    const before = route.probe && row.status >= 400 ? await route.probe(c) : undefined;
    const res = await callAs(actor, route, c);

    expect(res.status, JSON.stringify(res.body)).toBe(row.status);
    if (row.status >= 400) {
      expect(Object.keys(res.body)).toEqual(["error"]);
      expect(res.body.error).toMatchObject({ code: expect.any(String), message: expect.any(String) });
      if (row.code) expect(res.body.error.code).toBe(row.code);
      // A refused call changes nothing.
      if (route.probe) expect(await route.probe(c)).toEqual(before);
    } else if (route.okState) {
      expect(res.body.state).toBe(route.okState);
    }
  });
});

describe("an admin", () => {
  it("decides as an approver does, never on their own message", async () => {
    const own = (await a.call("admin", "POST", "/api/messages", draft("Admin's own"))).body;
    expect((await a.call("admin", "POST", `/api/messages/${own.id}/approve`, { revision: 1 })).body.error.code).toBe("self_approval");
    expect((await a.call("admin", "POST", `/api/messages/${own.id}/reject`, { reason: "mine" })).body.error.code).toBe("self_approval");

    const other = (await a.call("author", "POST", "/api/messages", draft("Admin approves"))).body;
    const approved = await a.call("admin", "POST", `/api/messages/${other.id}/approve`, { revision: 1 });
    expect(approved.status).toBe(200);
    expect(approved.body.approvals.map((x: { by: string }) => x.by)).toEqual(["admin@corp.example"]);
  });
});
