/**
 * The IMAP purge connector (src/purge/imap-connector.ts) against a real Dovecot with a master
 * user (test/support/dovecot.ts): it removes the recalled message from every folder of the
 * recipient's mailbox, and nothing that only resembles it (promise 10).
 */
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { ImapFlow } from "imapflow";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { freePort } from "../../src/infra/redis-process.js";
import { ImapPurgeConnector, type ImapPurgeSettings } from "../../src/purge/imap-connector.js";
import { PUBLIC_PREFIX, startDovecot, type Dovecot } from "../support/dovecot.js";
import { testCertificates, type TestCertificates } from "../support/smtp-sink.js";

const BULK = Array.from({ length: 50 }, (_, i) => `staff${i}@corp.test`);
const USERS = ["alice@corp.test", "bob@corp.test", "carol@corp.test", "dave@corp.test", "erin@corp.test", "tls@corp.test", ...BULK];

let dovecot: Dovecot;
let certs: TestCertificates;

beforeAll(async () => {
  certs = testCertificates();
  dovecot = await startDovecot({ users: USERS, tls: certs.server });
});

beforeEach(({ onTestFailed }) => onTestFailed(() => console.error(`dovecot log:\n${dovecot?.log()}`)));

afterAll(async () => {
  await dovecot?.stop();
  certs?.cleanup();
});

let seq = 0;
/** A Message-ID unique to the test that asks for it, like Airlock's own. */
const newId = () => `<recall-${++seq}.${process.pid}.${Date.now().toString(36)}@airlock.corp.test>`;

function mail(messageIdLine: string, extra = ""): string {
  return `From: comms@corp.test\r\nTo: staff@corp.test\r\nSubject: all-hands\r\n${messageIdLine}\r\n${extra}\r\nHello everyone.\r\n`;
}

function connector(overrides: Partial<ImapPurgeSettings> = {}): ImapPurgeConnector {
  return new ImapPurgeConnector({
    host: dovecot.host,
    port: dovecot.port,
    tls: "none",
    adminUser: dovecot.adminUser,
    adminPassword: dovecot.adminPassword,
    ...overrides,
  });
}

async function withConnector<T>(overrides: Partial<ImapPurgeSettings>, work: (c: ImapPurgeConnector) => Promise<T>): Promise<T> {
  const c = connector(overrides);
  try {
    return await work(c);
  } finally {
    await c.close();
  }
}

describe("IMAP purge connector against Dovecot", () => {
  it("removes the message from every folder and keeps everything that only resembles it", async () => {
    const target = newId();
    const core = target.slice(1, -1);
    const other = newId();
    const inbox = [
      mail(`Message-ID: ${target}`),
      mail(`Message-ID: ${target.toUpperCase()}`), // (a) differs only in case
      mail(`Message-ID: <x${core}>`), // (b) contains the target as a substring
      mail(`Message-ID: <${core}.example>`), // (b) again, the other side
      mail(`Message-ID: ${other}`, `In-Reply-To: ${target}\r\nReferences: <a@corp.test> ${target}\r\n`), // (c) mentions it
      mail(`X-Original-Message-ID: ${target}`), // no Message-ID of its own
    ];
    await dovecot.append("alice@corp.test", inbox);
    // A folded header is the same field (RFC 5322 unfolding).
    await dovecot.append("alice@corp.test", [mail(`Message-ID:\r\n ${target}`), mail("Message-ID: <kept@corp.test>")], "Archive/2026");
    // A public folder alice sees is not her mailbox.
    await dovecot.append("alice@corp.test", mail(`Message-ID: ${target}`), `${PUBLIC_PREFIX}Announcements`);

    await withConnector({}, async (c) => {
      const first = await c.purge("alice@corp.test", target);
      expect(first.outcome).toBe("purged");
      if (first.outcome !== "purged") return;
      expect(first.removed).toBe(2);
      expect([...first.folders].sort()).toEqual(["Archive/2026", "INBOX"]);

      expect(await dovecot.list("alice@corp.test")).toEqual([target.toUpperCase(), `<x${core}>`, `<${core}.example>`, other, ""]);
      expect(await dovecot.list("alice@corp.test", "Archive/2026")).toEqual(["<kept@corp.test>"]);
      expect(await dovecot.list("alice@corp.test", `${PUBLIC_PREFIX}Announcements`)).toEqual([target]);

      // At least once: the same purge again finds nothing and removes nothing.
      expect(await c.purge("alice@corp.test", target)).toEqual({ outcome: "not_found" });
      expect(await dovecot.list("alice@corp.test")).toHaveLength(5);
    });
  });

  it("leaves a message the user had marked \\Deleted in the same folder (UID EXPUNGE only)", async () => {
    const target = newId();
    const userDeleted = newId();
    await dovecot.append("bob@corp.test", mail(`Message-ID: ${userDeleted}`), "INBOX", ["\\Deleted", "\\Seen"]);
    await dovecot.append("bob@corp.test", [mail(`Message-ID: ${target}`), mail("Message-ID: <unrelated@corp.test>")]);

    const result = await withConnector({}, (c) => c.purge("bob@corp.test", target));
    expect(result).toEqual({ outcome: "purged", removed: 1, folders: ["INBOX"] });
    expect(await dovecot.list("bob@corp.test")).toEqual([userDeleted, "<unrelated@corp.test>"]);
  });

  it("searches only the configured folders when told to, and skips ones the user does not have", async () => {
    const target = newId();
    await dovecot.append("carol@corp.test", mail(`Message-ID: ${target}`));
    await dovecot.append("carol@corp.test", mail(`Message-ID: ${target}`), "Projects");

    const result = await withConnector({ folders: ["Projects", "No such folder"] }, (c) => c.purge("carol@corp.test", target));
    expect(result).toEqual({ outcome: "purged", removed: 1, folders: ["Projects"] });
    expect(await dovecot.list("carol@corp.test")).toEqual([target]);
    expect(await dovecot.list("carol@corp.test", "Projects")).toEqual([]);
  });

  it("fails for good, naming the admin login, when the admin password is wrong", async () => {
    const target = newId();
    await dovecot.append("dave@corp.test", mail(`Message-ID: ${target}`));

    const result = await withConnector({ adminPassword: "not-the-password" }, (c) => c.purge("dave@corp.test", target));
    expect(result).toMatchObject({ outcome: "failed", retry: false });
    if (result.outcome === "failed") {
      expect(result.reason).toContain(`refused the admin login ${dovecot.adminUser}`);
      expect(result.reason).toContain("AUTHENTICATIONFAILED");
    }
    expect(await dovecot.list("dave@corp.test")).toEqual([target]);
  });

  it("fails for good, naming the mailbox, for a user the server does not know", async () => {
    const result = await withConnector({}, (c) => c.purge("nobody@corp.test", newId()));
    expect(result).toMatchObject({ outcome: "failed", retry: false });
    if (result.outcome === "failed") expect(result.reason).toMatch(/^no mailbox nobody@corp\.test .*AUTHORIZATIONFAILED/);
  });

  it("refuses input it cannot purge safely without asking the server", async () => {
    await withConnector({ port: 1 }, async (c) => {
      for (const id of ["", "no-brackets@corp.test", "<>", "<two words@corp.test>", "<a@b>\r\nX: y"]) {
        expect(await c.purge("erin@corp.test", id)).toMatchObject({ outcome: "failed", retry: false });
      }
      const separator = await c.purge("erin@corp.test*someone-else", newId());
      expect(separator).toMatchObject({ outcome: "failed", retry: false });
    });
  });

  it("asks for a retry when the server cannot be reached, and after close()", async () => {
    const c = connector({ port: await freePort(), timeouts: { connectMs: 2000 } });
    const down = await c.purge("erin@corp.test", newId());
    expect(down).toMatchObject({ outcome: "failed", retry: true });
    await c.close();
    expect(await c.purge("erin@corp.test", newId())).toMatchObject({ outcome: "failed", retry: true, reason: expect.stringContaining("closed") });
  });

  it("gives up, asking for a retry, on a server that never greets or greets and then stalls", async () => {
    const sockets = new Set<Socket>();
    const keep = (s: Socket) => sockets.add(s.on("error", () => {}));
    const silent = createServer(keep); // accepts, never greets
    const stalling = createServer((s) => keep(s) && s.write("* OK ready\r\n")); // greets, then never answers
    const listen = (srv: Server) => new Promise<number>((res) => srv.listen(0, "127.0.0.1", () => res((srv.address() as AddressInfo).port)));
    try {
      const greeting = await withConnector({ port: await listen(silent), timeouts: { greetingMs: 300 } }, (c) => c.purge("erin@corp.test", newId()));
      expect(greeting).toMatchObject({ outcome: "failed", retry: true });
      const whole = await withConnector({ port: await listen(stalling), timeouts: { purgeMs: 300 } }, (c) => c.purge("erin@corp.test", newId()));
      expect(whole).toEqual({ outcome: "failed", retry: true, reason: "gave up after 300 ms" });
    } finally {
      for (const s of sockets) s.destroy();
      await Promise.all([silent, stalling].map((srv) => new Promise((res) => srv.close(res))));
    }
  });

  it("purges over implicit TLS and STARTTLS, and refuses a certificate it does not trust", async () => {
    const ids = [newId(), newId()];
    await dovecot.append("tls@corp.test", ids.map((id) => mail(`Message-ID: ${id}`)));

    const implicit = await withConnector({ tls: "implicit", port: dovecot.tlsPort!, ca: [certs.ca] }, (c) => c.purge("tls@corp.test", ids[0]!));
    expect(implicit).toEqual({ outcome: "purged", removed: 1, folders: ["INBOX"] });
    const starttls = await withConnector({ tls: "starttls", ca: [certs.ca] }, (c) => c.purge("tls@corp.test", ids[1]!));
    expect(starttls).toEqual({ outcome: "purged", removed: 1, folders: ["INBOX"] });

    for (const tls of ["implicit", "starttls"] as const) {
      const port = tls === "implicit" ? dovecot.tlsPort! : dovecot.port;
      const untrusted = await withConnector({ tls, port }, (c) => c.purge("tls@corp.test", newId()));
      expect(untrusted).toMatchObject({ outcome: "failed", retry: false, reason: expect.stringMatching(/certificate/) });
    }
  });

  it("purges 50 mailboxes in parallel over at most 4 sessions, each exactly", async () => {
    const target = newId();
    const neighbour = (i: number) => `<recall-neighbour-${i}.${target.slice(1)}`;
    for (let i = 0; i < BULK.length; i += 10) {
      await Promise.all(BULK.slice(i, i + 10).map((u, j) => dovecot.append(u, [mail(`Message-ID: ${neighbour(i + j)}`), mail(`Message-ID: ${target}`)])));
    }

    // Count the connector's open IMAP sessions: connect() opens one, close() (always called, maybe twice) ends it.
    const open = new Set<ImapFlow>();
    let maxOpen = 0;
    const realConnect = ImapFlow.prototype.connect;
    const realClose = ImapFlow.prototype.close;
    const connect = vi.spyOn(ImapFlow.prototype, "connect").mockImplementation(function (this: ImapFlow) {
      open.add(this);
      maxOpen = Math.max(maxOpen, open.size);
      return realConnect.call(this);
    });
    const close = vi.spyOn(ImapFlow.prototype, "close").mockImplementation(function (this: ImapFlow) {
      open.delete(this);
      realClose.call(this);
    });
    const started = Date.now();
    const results = await withConnector({ connections: 4 }, (c) => Promise.all(BULK.map((u) => c.purge(u, target)))).finally(() => {
      connect.mockRestore();
      close.mockRestore();
    });
    const elapsed = Date.now() - started;
    expect(maxOpen).toBe(4);
    expect(open.size).toBe(0);
    expect(results).toEqual(BULK.map(() => ({ outcome: "purged", removed: 1, folders: ["INBOX"] })));
    for (let i = 0; i < BULK.length; i += 10) {
      const lists = await Promise.all(BULK.slice(i, i + 10).map((u) => dovecot.list(u)));
      expect(lists).toEqual(BULK.slice(i, i + 10).map((_, j) => [neighbour(i + j)]));
    }
    expect(elapsed).toBeLessThan(15_000); // ~0.5 s here: a regression to one session at a time or a per-login stall shows
  });
});
