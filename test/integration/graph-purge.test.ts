/**
 * The Microsoft Graph purge connector (src/purge/graph-connector.ts) against a local HTTP server
 * that answers as Microsoft Graph and its token endpoint are documented to (test/support/
 * fake-graph.ts; the real service cannot be reached from here): it removes the recalled message
 * from the recipient's mailbox, and nothing that only resembles it (promise 10).
 */
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GraphPurgeConnector, type GraphPurgeSettings } from "../../src/purge/graph-connector.js";
import { startFakeGraph, type FakeGraph } from "../support/fake-graph.js";

let graph: FakeGraph;
/** The waits the connector asked for (its sleep is replaced: nothing in these tests sleeps). */
let waits: number[];

beforeEach(async () => {
  graph = await startFakeGraph();
  waits = [];
});
afterEach(async () => {
  await graph.stop();
  expect(graph.bugs).toEqual([]);
});

let seq = 0;
const newId = () => `<recall-${++seq}.${process.pid}@airlock.corp.test>`;

function connector(overrides: Partial<GraphPurgeSettings> = {}): GraphPurgeConnector {
  return new GraphPurgeConnector({
    tenantId: graph.tenantId,
    clientId: graph.clientId,
    clientSecret: graph.clientSecret,
    loginUrl: graph.loginUrl,
    apiUrl: graph.apiUrl,
    sleep: async (ms) => void waits.push(ms),
    ...overrides,
  });
}

async function withConnector<T>(overrides: Partial<GraphPurgeSettings>, work: (c: GraphPurgeConnector) => Promise<T>): Promise<T> {
  const c = connector(overrides);
  try {
    return await work(c);
  } finally {
    await c.close();
  }
}

const idsLeft = (upn: string) => graph.messages(upn).map((m) => m.internetMessageId);

describe("Graph purge connector against a local stand-in for Microsoft Graph", () => {
  it("removes every exact copy across pages and folders, and nothing that only resembles it", async () => {
    const target = newId();
    const core = target.slice(1, -1);
    const other = newId();
    graph.put("alice@corp.test", [target, target.toUpperCase(), `<x${core}>`, `<${core}.example>`, other, null]);
    graph.put("alice@corp.test", [target], "archive");
    graph.put("alice@corp.test", [target], "deleteditems");
    graph.put("bob@corp.test", [target, other]);
    // Four hits (Exchange's filter ignores case) on two pages: deleting before the second page is
    // read would shift it and miss a copy.
    graph.pageSize = 2;

    await withConnector({}, async (c) => {
      const first = await c.purge("alice@corp.test", target);
      expect(first).toMatchObject({ outcome: "purged", removed: 3 });
      if (first.outcome === "purged") expect([...first.folders].sort()).toEqual(["archive", "deleteditems", "inbox"]);
      expect(idsLeft("alice@corp.test")).toEqual([target.toUpperCase(), `<x${core}>`, `<${core}.example>`, other, null]);
      expect(idsLeft("bob@corp.test")).toEqual([target, other]); // only that user's mailbox

      // At least once: the same purge again finds nothing and removes nothing.
      expect(await c.purge("alice@corp.test", target)).toEqual({ outcome: "not_found" });
      expect(idsLeft("alice@corp.test")).toHaveLength(5);
    });
    expect(graph.requests.some((r) => r.url.includes("$skip=2"))).toBe(true);
    expect(graph.tokensIssued()).toBe(1);
  });

  it("quotes the Message-ID as an OData literal inside a percent-encoded filter", async () => {
    const target = `<o'brien+list&x=1#frag%20=${++seq}@corp.test>`;
    const near = target.replace("o'brien", "o''brien");
    graph.put("carol@corp.test", [near, target, "<o>"]);

    const result = await withConnector({}, (c) => c.purge("carol@corp.test", target));
    expect(result).toEqual({ outcome: "purged", removed: 1, folders: ["inbox"] });
    expect(idsLeft("carol@corp.test")).toEqual([near, "<o>"]);
    const search = graph.requests.find((r) => r.method === "GET")!;
    expect(search.url).toContain("%27%3Co%27%27brien%2Blist%26x%3D1%23frag%2520%3D");
  });

  it("waits as Retry-After says on 429 and 503, and gives up, asking for a retry, past its bounds", async () => {
    const target = newId();
    graph.put("dave@corp.test", [target, "<keep@corp.test>"]);

    // Throttled twice, then answered.
    const throttled = [
      { status: 429, headers: { "retry-after": "7" }, body: { error: { code: "TooManyRequests", message: "Please retry again later." } } },
      { status: 503, headers: { "retry-after": "2" }, body: { error: { code: "ServiceNotAvailable", message: "Service unavailable" } } },
    ];
    graph.hook = (r) => (r.method === "GET" ? throttled.shift() : undefined);
    expect(await withConnector({}, (c) => c.purge("dave@corp.test", target))).toMatchObject({ outcome: "purged", removed: 1 });
    expect(waits).toEqual([7000, 2000]);
    expect(idsLeft("dave@corp.test")).toEqual(["<keep@corp.test>"]);

    // Throttled on every attempt: four attempts, three waits, then `failed` with retry.
    const again = newId();
    graph.put("dave@corp.test", [again]);
    waits = [];
    graph.hook = (r) => (r.method === "GET" ? { status: 429, headers: { "retry-after": "3" }, body: { error: { code: "TooManyRequests", message: "Please retry again later." } } } : undefined);
    const exhausted = await withConnector({}, (c) => c.purge("dave@corp.test", again));
    expect(exhausted).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("429") });
    expect(waits).toEqual([3000, 3000, 3000]);

    // A wait longer than the cap is not waited: `failed` at once, the caller retries later.
    waits = [];
    graph.hook = () => ({ status: 429, headers: { "retry-after": "120" }, body: { error: { code: "TooManyRequests", message: "Please retry again later." } } });
    const long = await withConnector({}, (c) => c.purge("dave@corp.test", again));
    expect(long).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("asked to wait 120 s") });
    expect(waits).toEqual([]);

    // 503 without Retry-After: exponential backoff.
    graph.hook = (r) => (r.method === "DELETE" && waits.length < 2 ? { status: 503 } : undefined);
    expect(await withConnector({}, (c) => c.purge("dave@corp.test", again))).toMatchObject({ outcome: "purged", removed: 1 });
    expect(waits).toEqual([1000, 2000]);
    expect(idsLeft("dave@corp.test")).toEqual(["<keep@corp.test>"]);
  });

  it("does not follow a next link to another origin (it would carry the token there)", async () => {
    const target = newId();
    graph.put("kim@corp.test", [target]);
    graph.hook = (r) => (r.method === "GET" ? { status: 200, body: { value: [], "@odata.nextLink": "https://graph.attacker.example/v1.0/users/kim@corp.test/messages?$skip=10" } } : undefined);
    const result = await withConnector({}, (c) => c.purge("kim@corp.test", target));
    expect(result).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringContaining("a next link outside") });
    expect(idsLeft("kim@corp.test")).toEqual([target]);
  });

  it("answers `failed`, never a rejection, when the server answers nonsense", async () => {
    const target = newId();
    graph.put("lena@corp.test", [target]);
    graph.hook = (r) => (r.method === "GET" ? { status: 200, headers: { "content-type": "text/html" }, body: "<html>proxy login</html>" } : undefined);
    expect(await withConnector({}, (c) => c.purge("lena@corp.test", target))).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("without a value list") });
    graph.hook = (r) => (r.url.includes("/oauth2/") ? { status: 200, body: { token_type: "Bearer" } } : undefined);
    expect(await withConnector({}, (c) => c.purge("lena@corp.test", target))).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringContaining("requesting a Graph token") });
    expect(idsLeft("lena@corp.test")).toEqual([target]);
  });

  it("fails for good on an unknown user", async () => {
    const result = await withConnector({}, (c) => c.purge("nobody@corp.test", newId()));
    expect(result).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringMatching(/no mailbox nobody@corp\.test in Microsoft 365 \(404 ErrorInvalidUser/) });
  });

  it("fails for good, saying what to fix, when the token is refused", async () => {
    const target = newId();
    graph.put("erin@corp.test", [target]);
    const secret = await withConnector({ clientSecret: "wrong" }, (c) => c.purge("erin@corp.test", target));
    expect(secret).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringMatching(/invalid_client: AADSTS7000215.*check the client secret/) });
    const tenant = await withConnector({ tenantId: "no-such-tenant.example" }, (c) => c.purge("erin@corp.test", target));
    expect(tenant).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringMatching(/AADSTS90002.*check the tenant id/) });
    const app = await withConnector({ clientId: "00000000-0000-4000-8000-000000000000" }, (c) => c.purge("erin@corp.test", target));
    expect(app).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringContaining("AADSTS700016") });
    expect(idsLeft("erin@corp.test")).toEqual([target]);
    expect(graph.requests.every((r) => r.url.includes("/oauth2/"))).toBe(true); // never reached the mailbox
  });

  it("fails for good, naming Mail.ReadWrite, without the permission or outside the access policy", async () => {
    const target = newId();
    graph.put("frank@corp.test", [target]);

    graph.permissions = new Set(["Mail.Read"]); // may search, may not delete
    const readOnly = await withConnector({}, (c) => c.purge("frank@corp.test", target));
    expect(readOnly).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringMatching(/deleting.*403 ErrorAccessDenied.*Mail\.ReadWrite application permission/) });

    graph.permissions = new Set(["Mail.ReadWrite"]);
    graph.accessPolicy = new Set(["someone-else@corp.test"]);
    const policy = await withConnector({}, (c) => c.purge("frank@corp.test", target));
    expect(policy).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringMatching(/searching.*403 ErrorAccessDenied.*application access policy/) });
    expect(idsLeft("frank@corp.test")).toEqual([target]);

    graph.accessPolicy = new Set(["frank@corp.test"]);
    expect(await withConnector({}, (c) => c.purge("frank@corp.test", target))).toMatchObject({ outcome: "purged", removed: 1 });
  });

  it("reports the copies removed before the server failed, and finishes the purge when asked again", async () => {
    const target = newId();
    graph.put("gina@corp.test", [target, "<keep-1@corp.test>"]);
    graph.put("gina@corp.test", [target, "<keep-2@corp.test>"], "archive");
    graph.put("gina@corp.test", [target], "junkemail");

    let deletes = 0;
    graph.hook = (r) => (r.method === "DELETE" && ++deletes > 1 ? { status: 500, body: { error: { code: "UnknownError", message: "" } } } : undefined);
    const broken = await withConnector({}, (c) => c.purge("gina@corp.test", target));
    expect(broken).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringMatching(/500 UnknownError.*\(1 copy already removed\)$/) });
    expect(idsLeft("gina@corp.test")).toEqual(["<keep-1@corp.test>", target, "<keep-2@corp.test>", target]);

    // The connection drops on every DELETE: retried with backoff, then `failed`, nothing else lost.
    graph.hook = (r) => (r.method === "DELETE" ? "drop" : undefined);
    const dropped = await withConnector({}, (c) => c.purge("gina@corp.test", target));
    expect(dropped).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("connection failed") });
    expect(waits).toEqual([1000, 2000, 4000]);

    graph.hook = undefined;
    await withConnector({}, async (c) => {
      expect(await c.purge("gina@corp.test", target)).toMatchObject({ outcome: "purged", removed: 2 });
      expect(await c.purge("gina@corp.test", target)).toEqual({ outcome: "not_found" });
    });
    expect(idsLeft("gina@corp.test")).toEqual(["<keep-1@corp.test>", "<keep-2@corp.test>"]);
  });

  it("keeps its token until shortly before it expires, and replaces a revoked one once", async () => {
    let now = 1_000_000;
    const users = ["h1@corp.test", "h2@corp.test", "h3@corp.test"];
    const target = newId();
    for (const u of users) graph.put(u, [target, target]);
    await withConnector({ now: () => now }, async (c) => {
      expect(await c.purge(users[0]!, target)).toMatchObject({ outcome: "purged", removed: 2 });
      expect(await c.purge(users[1]!, newId())).toEqual({ outcome: "not_found" });
      expect(graph.tokensIssued()).toBe(1);

      now += 3599_000 - 300_000 - 1; // five minutes before expiry: still used
      expect(await c.purge(users[1]!, newId())).toEqual({ outcome: "not_found" });
      expect(graph.tokensIssued()).toBe(1);
      now += 1;
      expect(await c.purge(users[1]!, target)).toMatchObject({ outcome: "purged", removed: 2 });
      expect(graph.tokensIssued()).toBe(2);

      graph.revokeTokens();
      expect(await c.purge(users[2]!, target)).toMatchObject({ outcome: "purged", removed: 2 });
      expect(graph.tokensIssued()).toBe(3);

      // A token refused again right after being issued is the answer: no loop.
      graph.hook = (r) => (r.url.startsWith("/v1.0/") ? { status: 401, body: { error: { code: "InvalidAuthenticationToken", message: "Access token has expired or is not yet valid." } } } : undefined);
      const refused = await c.purge(users[2]!, target);
      expect(refused).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringContaining("Mail.ReadWrite") });
      expect(graph.tokensIssued()).toBe(4);
    });
  });

  it("gives up, asking for a retry, on a server that never answers", async () => {
    const target = newId();
    graph.put("ivan@corp.test", [target]);
    graph.hook = (r) => (r.method === "GET" ? "hang" : undefined);
    const perRequest = await withConnector({ timeouts: { requestMs: 200 }, retry: { maxAttempts: 2 } }, (c) => c.purge("ivan@corp.test", target));
    expect(perRequest).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("no answer in time (2 attempts)") });
    const whole = await withConnector({ timeouts: { purgeMs: 300 } }, (c) => c.purge("ivan@corp.test", target));
    expect(whole).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("gave up after 300 ms") });
    expect(idsLeft("ivan@corp.test")).toEqual([target]);
  });

  it("refuses input it cannot purge safely without asking the server", async () => {
    await withConnector({}, async (c) => {
      for (const id of ["", "no-brackets@corp.test", "<>", "<two words@corp.test>", "<a@b>\r\nX: y"]) {
        expect(await c.purge("judy@corp.test", id)).toMatchObject({ outcome: "failed", retry: false });
      }
      for (const mailbox of ["", "judy", "judy@corp.test/messages", "../admin@corp.test", "judy@corp.test?x=1", "a b@corp.test", "judy@corp.test#"]) {
        expect(await c.purge(mailbox, newId())).toMatchObject({ outcome: "failed", retry: false });
      }
    });
    expect(graph.requests).toEqual([]);
  });

  it("runs at most `concurrency` purges at once, each exact, and refuses new ones after close()", async () => {
    const target = newId();
    const users = Array.from({ length: 20 }, (_, i) => `staff${i}@corp.test`);
    for (const [i, u] of users.entries()) graph.put(u, [`<neighbour-${i}.${target.slice(1)}`, target]);
    // Each API answer is held a moment, so that purges overlap as they would against a real server.
    graph.hook = async (r) => (r.url.startsWith("/v1.0/") ? void (await delay(5)) : undefined);
    const c = connector({ concurrency: 3 });
    const results = await Promise.all(users.map((u) => c.purge(u, target)));
    expect(results).toEqual(users.map(() => ({ outcome: "purged", removed: 1, folders: ["inbox"] })));
    for (const [i, u] of users.entries()) expect(idsLeft(u)).toEqual([`<neighbour-${i}.${target.slice(1)}`]);
    expect(graph.maxInFlight()).toBeLessThanOrEqual(3);
    expect(graph.maxInFlight()).toBeGreaterThanOrEqual(2);
    await c.close();
    expect(await c.purge(users[0]!, target)).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("closed") });
  });
});
