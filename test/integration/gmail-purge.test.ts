/**
 * The Gmail purge connector (src/purge/gmail-connector.ts) against a local HTTP server that
 * answers as the Gmail API and Google's token endpoint are documented to (test/support/
 * fake-gmail.ts; Google cannot be reached from here): it removes the recalled message from the
 * recipient's mailbox, as that recipient by domain-wide delegation, and nothing that only
 * resembles it (promise 10).
 */
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GmailPurgeConnector, type GmailPurgeSettings } from "../../src/purge/gmail-connector.js";
import { startFakeGmail, type FakeGmail } from "../support/fake-gmail.js";

let gmail: FakeGmail;
/** The waits the connector asked for (its sleep is replaced: nothing in these tests sleeps). */
let waits: number[];

beforeEach(async () => {
  gmail = await startFakeGmail();
  waits = [];
});
afterEach(async () => {
  await gmail.stop();
  expect(gmail.bugs).toEqual([]);
});

let seq = 0;
const newId = () => `<recall-${++seq}.${process.pid}@airlock.corp.test>`;

function connector(overrides: Partial<GmailPurgeSettings> = {}): GmailPurgeConnector {
  return new GmailPurgeConnector({ serviceAccount: gmail.serviceAccount, mode: "trash", apiUrl: gmail.apiUrl, sleep: async (ms) => void waits.push(ms), ...overrides });
}

async function withConnector<T>(overrides: Partial<GmailPurgeSettings>, work: (c: GmailPurgeConnector) => Promise<T>): Promise<T> {
  const c = connector(overrides);
  try {
    return await work(c);
  } finally {
    await c.close();
  }
}

/** A mailbox holding the target in several places and messages that only resemble it. */
function fill(user: string, target: string) {
  const core = target.slice(1, -1);
  const other = newId();
  gmail.put(user, [target, target.toUpperCase(), `<x${core}>`, `<${core}.example>`, other]);
  gmail.put(user, [{ headers: [{ name: "X-Original-Message-ID", value: target }] }]); // no Message-ID of its own
  gmail.put(user, [{ headers: [{ name: "Message-ID", value: target }, { name: "Message-Id", value: other }] }]); // two, one of them another
  gmail.put(user, [target], ["SPAM", "UNREAD"]);
  gmail.put(user, [{ headers: [{ name: "Message-Id", value: target }] }], ["Label_7", "CATEGORY_UPDATES"]); // archived, under a label
  return { kept: [target.toUpperCase(), `<x${core}>`, `<${core}.example>`, other, "", target] };
}

describe("Gmail purge connector against a local stand-in for the Gmail API", () => {
  it("trashes every exact copy across pages and labels, and nothing that only resembles it", async () => {
    const target = newId();
    const { kept } = fill("alice@corp.test", target);
    gmail.put("bob@corp.test", [target]);
    gmail.pageSize = 2; // five hits (the search ignores case) on three pages

    await withConnector({}, async (c) => {
      const first = await c.purge("alice@corp.test", target);
      expect(first).toMatchObject({ outcome: "purged", removed: 3 });
      if (first.outcome === "purged") expect([...first.folders].sort()).toEqual(["INBOX", "Label_7", "SPAM"]);
      expect(gmail.inbox("alice@corp.test")).toEqual(kept);
      expect(gmail.trash("alice@corp.test")).toEqual([target, target, target]);
      expect(gmail.inbox("bob@corp.test")).toEqual([target]); // only that user's mailbox

      // At least once: the copies in Trash are not trashed again, the purge finds nothing.
      expect(await c.purge("alice@corp.test", target)).toEqual({ outcome: "not_found" });
    });
    expect(gmail.requests.filter((r) => r.url.includes("pageToken=p")).length).toBeGreaterThanOrEqual(2);
    expect(gmail.requests.find((r) => r.url.includes("q="))!.url).toContain(`q=${encodeURIComponent(`rfc822msgid:${target.slice(1, -1)}`)}&includeSpamTrash=true`);
    expect(gmail.tokensIssued("alice@corp.test")).toBe(1);
  });

  it("deletes for good in mode delete, reading every page before deleting", async () => {
    const target = newId();
    const { kept } = fill("carol@corp.test", target);
    gmail.put("carol@corp.test", [target], ["TRASH"]); // already in Trash: deleted too
    gmail.pageSize = 2;

    await withConnector({ mode: "delete" }, async (c) => {
      expect(await c.purge("carol@corp.test", target)).toMatchObject({ outcome: "purged", removed: 4 });
      expect(gmail.inbox("carol@corp.test")).toEqual(kept);
      expect(gmail.trash("carol@corp.test")).toEqual([]);
      expect(await c.purge("carol@corp.test", target)).toEqual({ outcome: "not_found" });
    });
  });

  it("fails for good, naming domain-wide delegation, when the scope is not delegated", async () => {
    const target = newId();
    gmail.put("dave@corp.test", [target]);
    gmail.delegatedScopes = new Set(["https://www.googleapis.com/auth/gmail.modify"]);
    const result = await withConnector({ mode: "delete" }, (c) => c.purge("dave@corp.test", target));
    expect(result).toMatchObject({ outcome: "failed", retry: false });
    if (result.outcome === "failed") {
      expect(result.reason).toContain("unauthorized_client");
      expect(result.reason).toContain("Domain-wide delegation");
      expect(result.reason).toContain(`client id ${gmail.serviceAccount.client_id}`);
      expect(result.reason).toContain("scope https://mail.google.com/");
    }
    expect(gmail.inbox("dave@corp.test")).toEqual([target]);
    // The scope of mode trash is delegated: that works.
    expect(await withConnector({ mode: "trash" }, (c) => c.purge("dave@corp.test", target))).toMatchObject({ outcome: "purged", removed: 1 });
  });

  it("fails for good on an unknown user, a user without Gmail, and a user removed since their token", async () => {
    await withConnector({}, async (c) => {
      expect(await c.purge("nobody@corp.test", newId())).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringMatching(/^no Google Workspace user nobody@corp\.test .*Invalid email or User ID/) });
      gmail.addUserWithoutGmail("nomail@corp.test");
      expect(await c.purge("nomail@corp.test", newId())).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringMatching(/no Gmail mailbox nomail@corp\.test \(400 FAILED_PRECONDITION: Mail service not enabled/) });
      gmail.put("gone@corp.test", []);
      expect(await c.purge("gone@corp.test", newId())).toEqual({ outcome: "not_found" });
      gmail.removeUser("gone@corp.test");
      expect(await c.purge("gone@corp.test", newId())).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringContaining("no Gmail mailbox gone@corp.test (404") });
    });
  });

  it("fails for good when the key is not the service account's", async () => {
    const other = await startFakeGmail(); // same client_email, another key pair
    try {
      gmail.put("erin@corp.test", [newId()]);
      const result = await withConnector({ serviceAccount: { ...gmail.serviceAccount, private_key: other.serviceAccount.private_key } }, (c) => c.purge("erin@corp.test", newId()));
      expect(result).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringMatching(/Invalid JWT Signature.*check the service account key/) });
    } finally {
      await other.stop();
    }
  });

  it("backs off on 429, 5xx and 403 rate limits, honours Retry-After, and gives up past its bounds", async () => {
    const target = newId();
    gmail.put("frank@corp.test", [target, "<keep@corp.test>"]);
    const rate = (reason: string) => ({ status: 403, body: { error: { code: 403, message: "User-rate limit exceeded.", errors: [{ reason, domain: "usageLimits" }], status: "PERMISSION_DENIED" } } });
    const script = [
      { status: 429, headers: { "retry-after": "5" }, body: { error: { code: 429, message: "Too many concurrent requests for user", status: "RESOURCE_EXHAUSTED" } } },
      rate("userRateLimitExceeded"),
      { status: 503, body: { error: { code: 503, message: "The service is currently unavailable.", status: "UNAVAILABLE" } } },
    ];
    gmail.hook = (r) => (r.url.includes("q=") ? script.shift() : undefined);
    expect(await withConnector({}, (c) => c.purge("frank@corp.test", target))).toMatchObject({ outcome: "purged", removed: 1 });
    expect(waits).toEqual([5000, 2000, 4000]); // Retry-After, then the backoff of attempts 2 and 3
    expect(gmail.inbox("frank@corp.test")).toEqual(["<keep@corp.test>"]);

    // The token endpoint fails for a moment: retried too.
    const again = newId();
    gmail.put("frank@corp.test", [again]);
    waits = [];
    let tokenFailures = 1;
    gmail.hook = (r) => (r.url === "/token" && tokenFailures-- > 0 ? { status: 500, body: { error: "internal_failure" } } : undefined);
    gmail.revokeTokens();
    expect(await withConnector({}, (c) => c.purge("frank@corp.test", again))).toMatchObject({ outcome: "purged", removed: 1 });
    expect(waits).toEqual([1000]);

    // Rate-limited on every attempt: `failed`, retry later; a long Retry-After is not waited.
    waits = [];
    gmail.hook = (r) => (r.url.includes("q=") ? rate("rateLimitExceeded") : undefined);
    expect(await withConnector({}, (c) => c.purge("frank@corp.test", newId()))).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("403") });
    expect(waits).toEqual([1000, 2000, 4000]);
    waits = [];
    gmail.hook = () => ({ status: 429, headers: { "retry-after": "600" } });
    expect(await withConnector({}, (c) => c.purge("frank@corp.test", newId()))).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("asked to wait 600 s") });
    expect(waits).toEqual([]);

    // A 403 that is not a rate limit is final.
    gmail.hook = (r) => (r.url.includes("q=") ? { status: 403, body: { error: { code: 403, message: "Request had insufficient authentication scopes.", errors: [{ reason: "insufficientPermissions" }], status: "PERMISSION_DENIED" } } } : undefined);
    expect(await withConnector({}, (c) => c.purge("frank@corp.test", newId()))).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringContaining("gmail.modify by domain-wide delegation") });
  });

  it("reports the copies removed before the server failed, and finishes the purge when asked again", async () => {
    const target = newId();
    gmail.put("gina@corp.test", [target, "<keep-1@corp.test>", target]);
    gmail.put("gina@corp.test", [target, "<keep-2@corp.test>"], ["Label_3"]);

    let trashed = 0;
    gmail.hook = (r) => (r.url.endsWith("/trash") && ++trashed > 1 ? { status: 500, body: { error: { code: 500, message: "Backend Error", status: "INTERNAL" } } } : undefined);
    const broken = await withConnector({}, (c) => c.purge("gina@corp.test", target));
    expect(broken).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringMatching(/500 INTERNAL: Backend Error \(1 copy already removed\)$/) });
    expect(gmail.inbox("gina@corp.test")).toEqual(["<keep-1@corp.test>", target, target, "<keep-2@corp.test>"]);

    gmail.hook = undefined;
    await withConnector({}, async (c) => {
      expect(await c.purge("gina@corp.test", target)).toEqual({ outcome: "purged", removed: 2, folders: ["INBOX", "Label_3"] });
      expect(await c.purge("gina@corp.test", target)).toEqual({ outcome: "not_found" });
    });
    expect(gmail.inbox("gina@corp.test")).toEqual(["<keep-1@corp.test>", "<keep-2@corp.test>"]);
  });

  it("keeps one token per user until shortly before it expires, and replaces a revoked one once", async () => {
    let now = 1_700_000_000_000;
    const target = newId();
    for (const u of ["h1@corp.test", "h2@corp.test"]) gmail.put(u, [target, "<keep@corp.test>"]);
    await withConnector({ now: () => now, tokenCacheSize: 2 }, async (c) => {
      // Both users at once: one token each (the stand-in refuses a token used on another user's mailbox).
      expect(await Promise.all(["h1@corp.test", "h2@corp.test", "h1@corp.test"].map((u) => c.purge(u, newId())))).toEqual([{ outcome: "not_found" }, { outcome: "not_found" }, { outcome: "not_found" }]);
      expect([gmail.tokensIssued("h1@corp.test"), gmail.tokensIssued("h2@corp.test")]).toEqual([1, 1]);

      now += 3599_000 - 300_000 - 1;
      expect(await c.purge("h1@corp.test", newId())).toEqual({ outcome: "not_found" });
      expect(gmail.tokensIssued("h1@corp.test")).toBe(1);
      now += 1;
      expect(await c.purge("h1@corp.test", target)).toMatchObject({ outcome: "purged", removed: 1 });
      expect(gmail.tokensIssued("h1@corp.test")).toBe(2);

      gmail.revokeTokens();
      expect(await c.purge("h2@corp.test", target)).toMatchObject({ outcome: "purged", removed: 1 });
      expect(gmail.tokensIssued("h2@corp.test")).toBe(2);

      // The cache holds two users: a third pushes out the oldest (h1), which then needs a new token.
      gmail.put("h3@corp.test", []);
      await c.purge("h3@corp.test", newId());
      await c.purge("h2@corp.test", newId());
      expect(gmail.tokensIssued("h2@corp.test")).toBe(2);
      await c.purge("h1@corp.test", newId());
      expect(gmail.tokensIssued("h1@corp.test")).toBe(3);
    });
    expect(gmail.inbox("h1@corp.test")).toEqual(["<keep@corp.test>"]);
  });

  it("refuses input it cannot purge safely without asking the server", async () => {
    await withConnector({}, async (c) => {
      for (const id of ["", "no-brackets@corp.test", "<>", "<two words@corp.test>", "<a@b>\r\nX: y", "<a(b)@corp.test>", '<a"b@corp.test>', "<{a}@corp.test>"]) {
        expect(await c.purge("judy@corp.test", id)).toMatchObject({ outcome: "failed", retry: false });
      }
      for (const mailbox of ["", "judy", "judy@corp.test/messages", "judy@corp.test?x=1", "a b@corp.test", "me"]) {
        expect(await c.purge(mailbox, newId())).toMatchObject({ outcome: "failed", retry: false });
      }
    });
    const broken = connector({ serviceAccount: { ...gmail.serviceAccount, private_key: "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n" } });
    expect(await broken.purge("judy@corp.test", newId())).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringContaining("private key") });
    await broken.close();
    expect(gmail.requests).toEqual([]);
  });

  it("runs at most `concurrency` purges at once, each exact, and refuses new ones after close()", async () => {
    const target = newId();
    const users = Array.from({ length: 20 }, (_, i) => `staff${i}@corp.test`);
    for (const [i, u] of users.entries()) gmail.put(u, [`<neighbour-${i}.${target.slice(1)}`, target]);
    // Each answer is held a moment, so that purges overlap as they would against a real server.
    gmail.hook = async () => void (await delay(5));
    const c = connector({ concurrency: 3 });
    const results = await Promise.all(users.map((u) => c.purge(u, target)));
    expect(results).toEqual(users.map(() => ({ outcome: "purged", removed: 1, folders: ["INBOX"] })));
    for (const [i, u] of users.entries()) expect(gmail.inbox(u)).toEqual([`<neighbour-${i}.${target.slice(1)}`]);
    expect(gmail.maxInFlight()).toBeLessThanOrEqual(3);
    expect(gmail.maxInFlight()).toBeGreaterThanOrEqual(2);
    await c.close();
    expect(await c.purge(users[0]!, target)).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("closed") });
  });
});
