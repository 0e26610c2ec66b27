import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { GmailPurgeConnector } from "../../src/purge/gmail-connector.js";
import { GraphPurgeConnector } from "../../src/purge/graph-connector.js";
import { ImapPurgeConnector } from "../../src/purge/imap-connector.js";
import { createPurgeConnector, parsePurgeSettings, type PurgeSettings } from "../../src/purge/purge-settings.js";

const dir = mkdtempSync(join(tmpdir(), "purge-settings-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, content: string) => {
  const path = join(dir, name);
  writeFileSync(path, content);
  return path;
};

const SECRET = "s3cr3t-Value-that-must-not-leak";
const PEM_KEY = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
const KEY_JSON = {
  type: "service_account",
  project_id: "corp-project",
  private_key_id: "0123abcd",
  private_key: PEM_KEY,
  client_email: "airlock-purge@corp-project.iam.gserviceaccount.com",
  client_id: "104502984711234567890",
  token_uri: "https://oauth2.googleapis.com/token",
};

function ok(env: Record<string, string>): PurgeSettings {
  const r = parsePurgeSettings(env);
  if (!r.ok) throw new Error(`unexpected problems: ${r.problems.join("; ")}`);
  return r.settings;
}
function problems(env: Record<string, string>): string[] {
  const r = parsePurgeSettings(env);
  if (r.ok) throw new Error("expected problems, got settings");
  for (const p of r.problems) {
    expect(p).not.toContain(SECRET);
    expect(p).not.toContain("BEGIN PRIVATE KEY");
  }
  return r.problems;
}

const IMAP = { PURGE_CONNECTOR: "imap", PURGE_IMAP_URL: "imaps://mail.corp.example", PURGE_IMAP_ADMIN_USER: "airlock-admin", PURGE_IMAP_ADMIN_PASSWORD: SECRET };
const GRAPH = { PURGE_CONNECTOR: "graph", PURGE_GRAPH_TENANT_ID: "corp.example", PURGE_GRAPH_CLIENT_ID: "c1d2e3f4-1111-4111-8111-0000000000a1", PURGE_GRAPH_CLIENT_SECRET: SECRET };

describe("purge settings", () => {
  it("means no purge when PURGE_CONNECTOR is unset (or empty), with the documented defaults, frozen", () => {
    for (const env of [{}, { PURGE_CONNECTOR: "" }, { PATH: "/usr/bin", OTHER_SECRET: "x" }] as Array<Record<string, string>>) {
      const s = ok(env);
      expect(s).toEqual({ connector: null, concurrency: 4, ratePerSecond: 20, notFoundRetryMinutes: 30, notFoundRetryEverySeconds: 60, correctionWaitSeconds: 120 });
      expect(Object.isFrozen(s)).toBe(true);
    }
    expect(createPurgeConnector(ok({}))).toBeNull();
  });

  it("names each bad variable", () => {
    const p = problems({ PURGE_CONNECTOR: "exchange", PURGE_CONCURRENCY: "0", PURGE_RATE_PER_SECOND: "-1", PURGE_NOT_FOUND_RETRY_MINUTES: "soon", PURGE_NOT_FOUND_RETRY_EVERY_SECONDS: "1.5" });
    expect(p).toHaveLength(5);
    expect(p[0]).toBe("PURGE_CONNECTOR: must be imap, graph or gmail (unset: no purge)");
    for (const name of ["PURGE_CONCURRENCY", "PURGE_RATE_PER_SECOND", "PURGE_NOT_FOUND_RETRY_MINUTES", "PURGE_NOT_FOUND_RETRY_EVERY_SECONDS"]) expect(p.some((x) => x.startsWith(`${name}: `))).toBe(true);
  });

  it("refuses another connector's variables beside the chosen one, or with none chosen", () => {
    expect(problems({ ...GRAPH, PURGE_IMAP_URL: "imaps://mail.corp.example" })).toEqual(["PURGE_IMAP_URL: set, but PURGE_CONNECTOR is graph: set PURGE_CONNECTOR=imap or remove it"]);
    expect(problems({ PURGE_GMAIL_MODE: "delete" })).toEqual(["PURGE_GMAIL_MODE: set, but PURGE_CONNECTOR is unset (no purge): set PURGE_CONNECTOR=gmail or remove it"]);
  });

  describe("imap", () => {
    it("reads the server, TLS, admin and folders, and builds the IMAP connector", () => {
      const s = ok({ ...IMAP, PURGE_IMAP_FOLDERS: "INBOX, Archive/2026 ,Junk", PURGE_CONCURRENCY: "8" });
      expect(s).toMatchObject({ connector: "imap", concurrency: 8, imap: { host: "mail.corp.example", port: 993, tls: "implicit", adminUser: "airlock-admin", adminPassword: SECRET, masterSeparator: "*", folders: ["INBOX", "Archive/2026", "Junk"], connections: 8 } });
      const c = createPurgeConnector(s);
      expect(c).toBeInstanceOf(ImapPurgeConnector);
      return c!.close();
    });

    it("takes the password from a file, without its trailing newline", () => {
      const s = ok({ ...IMAP, PURGE_IMAP_ADMIN_PASSWORD: "", PURGE_IMAP_ADMIN_PASSWORD_FILE: file("imap-pass", `${SECRET}\n`) });
      expect(s.connector === "imap" && s.imap.adminPassword).toBe(SECRET);
    });

    it("defaults to STARTTLS on imap://, allows cleartext to this machine only", () => {
      expect(ok({ ...IMAP, PURGE_IMAP_URL: "imap://mail.corp.example:1143" })).toMatchObject({ imap: { port: 1143, tls: "starttls" } });
      expect(ok({ ...IMAP, PURGE_IMAP_URL: "imap://127.0.0.1", PURGE_IMAP_TLS: "none" })).toMatchObject({ imap: { host: "127.0.0.1", port: 143, tls: "none" } });
      expect(problems({ ...IMAP, PURGE_IMAP_URL: "imap://mail.corp.example", PURGE_IMAP_TLS: "none" })).toEqual([expect.stringMatching(/^PURGE_IMAP_TLS: none only to this machine/)]);
      expect(problems({ ...IMAP, PURGE_IMAP_TLS: "starttls" })).toEqual([expect.stringMatching(/^PURGE_IMAP_TLS: starttls contradicts PURGE_IMAP_URL imaps:\/\//)]);
      expect(problems({ ...IMAP, PURGE_IMAP_URL: "imap://mail.corp.example", PURGE_IMAP_TLS: "implicit" })).toEqual(["PURGE_IMAP_TLS: implicit needs PURGE_IMAP_URL imaps://"]);
    });

    it("names what is missing or wrong, and never prints a secret", () => {
      expect(problems({ PURGE_CONNECTOR: "imap" })).toEqual([
        "PURGE_IMAP_URL: required with PURGE_CONNECTOR=imap",
        "PURGE_IMAP_ADMIN_USER: required with PURGE_CONNECTOR=imap",
        "PURGE_IMAP_ADMIN_PASSWORD: required with PURGE_CONNECTOR=imap (or PURGE_IMAP_ADMIN_PASSWORD_FILE)",
      ]);
      expect(problems({ ...IMAP, PURGE_IMAP_URL: `imaps://admin:${SECRET}@mail.corp.example` })).toEqual([expect.stringMatching(/^PURGE_IMAP_URL: must not carry credentials/)]);
      expect(problems({ ...IMAP, PURGE_IMAP_URL: "https://mail.corp.example" })).toEqual([expect.stringMatching(/^PURGE_IMAP_URL: must be imaps:\/\/host/)]);
      expect(problems({ ...IMAP, PURGE_IMAP_ADMIN_PASSWORD_FILE: file("also", SECRET) })).toEqual(["PURGE_IMAP_ADMIN_PASSWORD: set together with PURGE_IMAP_ADMIN_PASSWORD_FILE: keep one"]);
      const missing = join(dir, "no-such-file");
      expect(problems({ ...IMAP, PURGE_IMAP_ADMIN_PASSWORD: "", PURGE_IMAP_ADMIN_PASSWORD_FILE: missing })).toEqual([`PURGE_IMAP_ADMIN_PASSWORD_FILE: cannot read ${missing}: no such file`]);
      expect(problems({ ...IMAP, PURGE_IMAP_ADMIN_PASSWORD: "", PURGE_IMAP_ADMIN_PASSWORD_FILE: file("empty", "\n") })).toEqual([expect.stringMatching(/^PURGE_IMAP_ADMIN_PASSWORD_FILE: .* is empty$/)]);
      expect(problems({ ...IMAP, PURGE_IMAP_CA_FILE: missing })).toEqual([`PURGE_IMAP_CA_FILE: cannot read ${missing}: no such file`]);
      expect(problems({ ...IMAP, PURGE_IMAP_CA_FILE: file("not-a-ca", SECRET) })).toEqual([expect.stringMatching(/^PURGE_IMAP_CA_FILE: .* holds no PEM certificate$/)]);
      expect(problems({ ...IMAP, PURGE_IMAP_FOLDERS: " , " })).toEqual([expect.stringMatching(/^PURGE_IMAP_FOLDERS: must name folders/)]);
    });
  });

  describe("graph", () => {
    it("reads the tenant, app and secret (or secret file), and builds the Graph connector", () => {
      const s = ok(GRAPH);
      expect(s).toMatchObject({ connector: "graph", graph: { tenantId: "corp.example", clientSecret: SECRET, loginUrl: "https://login.microsoftonline.com", apiUrl: "https://graph.microsoft.com/v1.0", concurrency: 4 } });
      expect(createPurgeConnector(s)).toBeInstanceOf(GraphPurgeConnector);
      const fromFile = ok({ ...GRAPH, PURGE_GRAPH_TENANT_ID: "8f2a1b3c-0000-4000-8000-00000000a11c", PURGE_GRAPH_CLIENT_SECRET: "", PURGE_GRAPH_CLIENT_SECRET_FILE: file("graph-secret", `${SECRET}\r\n`) });
      expect(fromFile.connector === "graph" && fromFile.graph.clientSecret).toBe(SECRET);
      expect(ok({ ...GRAPH, PURGE_GRAPH_API_URL: "http://127.0.0.1:8080/v1.0" })).toMatchObject({ graph: { apiUrl: "http://127.0.0.1:8080/v1.0" } });
    });

    it("names what is missing or wrong", () => {
      expect(problems({ PURGE_CONNECTOR: "graph" })).toEqual([
        "PURGE_GRAPH_TENANT_ID: required with PURGE_CONNECTOR=graph",
        "PURGE_GRAPH_CLIENT_ID: required with PURGE_CONNECTOR=graph",
        "PURGE_GRAPH_CLIENT_SECRET: required with PURGE_CONNECTOR=graph (or PURGE_GRAPH_CLIENT_SECRET_FILE)",
      ]);
      const p = problems({ ...GRAPH, PURGE_GRAPH_TENANT_ID: "corp", PURGE_GRAPH_CLIENT_ID: "airlock", PURGE_GRAPH_API_URL: "http://graph.corp.example/v1.0" });
      expect(p.map((x) => x.split(":")[0])).toEqual(["PURGE_GRAPH_TENANT_ID", "PURGE_GRAPH_CLIENT_ID", "PURGE_GRAPH_API_URL"]);
      const missing = join(dir, "no-secret");
      expect(problems({ ...GRAPH, PURGE_GRAPH_CLIENT_SECRET: "", PURGE_GRAPH_CLIENT_SECRET_FILE: missing })).toEqual([`PURGE_GRAPH_CLIENT_SECRET_FILE: cannot read ${missing}: no such file`]);
    });
  });

  describe("gmail", () => {
    it("reads the service account key and the mode, and builds the Gmail connector", () => {
      const s = ok({ PURGE_CONNECTOR: "gmail", PURGE_GMAIL_SERVICE_ACCOUNT_FILE: file("key.json", JSON.stringify(KEY_JSON)) });
      expect(s).toMatchObject({ connector: "gmail", gmail: { mode: "trash", apiUrl: "https://gmail.googleapis.com", serviceAccount: { client_email: KEY_JSON.client_email, token_uri: KEY_JSON.token_uri, client_id: KEY_JSON.client_id } } });
      expect(createPurgeConnector(s)).toBeInstanceOf(GmailPurgeConnector);
      expect(ok({ PURGE_CONNECTOR: "gmail", PURGE_GMAIL_MODE: "delete", PURGE_GMAIL_SERVICE_ACCOUNT_FILE: file("key2.json", JSON.stringify(KEY_JSON)) })).toMatchObject({ gmail: { mode: "delete" } });
    });

    it("names what is wrong with the key file, and never prints the key", () => {
      const gmail = (content: string) => ({ PURGE_CONNECTOR: "gmail", PURGE_GMAIL_SERVICE_ACCOUNT_FILE: file(`k-${Math.random()}.json`, content) });
      expect(problems({ PURGE_CONNECTOR: "gmail" })).toEqual(["PURGE_GMAIL_SERVICE_ACCOUNT_FILE: required with PURGE_CONNECTOR=gmail"]);
      const missing = join(dir, "no-key.json");
      expect(problems({ PURGE_CONNECTOR: "gmail", PURGE_GMAIL_SERVICE_ACCOUNT_FILE: missing })).toEqual([`PURGE_GMAIL_SERVICE_ACCOUNT_FILE: cannot read ${missing}: no such file`]);
      expect(problems(gmail(`${PEM_KEY}`))).toEqual([expect.stringMatching(/is not JSON/)]);
      expect(problems(gmail(JSON.stringify({ ...KEY_JSON, client_email: undefined })))).toEqual([expect.stringMatching(/: client_email: must be the service account's email$/)]);
      expect(problems(gmail(JSON.stringify({ ...KEY_JSON, type: "authorized_user" })))).toEqual([expect.stringMatching(/: type: must be "service_account"/)]);
      expect(problems(gmail(JSON.stringify({ ...KEY_JSON, private_key: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" })))).toEqual([expect.stringMatching(/: private_key: cannot be read as a PEM private key$/)]);
      expect(problems({ ...gmail(JSON.stringify(KEY_JSON)), PURGE_GMAIL_MODE: "archive" })).toEqual(["PURGE_GMAIL_MODE: must be trash or delete"]);
    });
  });
});
