/**
 * Production runs compiled JavaScript: `npm run build`'s output starts with plain `node` (no tsx),
 * finds its Lua scripts and templates, serves /readyz, sends an approval request, stops on SIGTERM.
 * Built into a temporary folder laid out like the Docker image (dist/, templates/, node_modules/,
 * package.json side by side), so it neither races nor disturbs a developer's dist/.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, expect, it } from "vitest";
import { sha256 } from "../../src/auth/users.js";
import { freePort } from "../../src/infra/redis-process.js";
import { tokenOf, USERS, type UserKey } from "../support/airlock.js";
import { api } from "../support/processes.js";
import { startTestRedis, type TestRedis } from "../support/redis.js";
import { startSmtpSink, type SmtpSink } from "../support/smtp-sink.js";

const REPO = new URL("../../", import.meta.url).pathname;

let app: string;
let redis: TestRedis;
let sink: SmtpSink;
let child: ChildProcess | undefined;
let stderr = "";

beforeAll(async () => {
  app = mkdtempSync(join(tmpdir(), "airlock-compiled-"));
  const build = promisify(execFile)(process.execPath, [join(REPO, "scripts/build.mjs"), "--out-dir", join(app, "dist")], { cwd: REPO });
  [redis, sink] = await Promise.all([startTestRedis(), startSmtpSink(), build]);
  // The image's layout: /app/{dist,templates,node_modules,package.json} (package.json: "type": "module").
  symlinkSync(join(REPO, "node_modules"), join(app, "node_modules"), "dir");
  symlinkSync(join(REPO, "templates"), join(app, "templates"), "dir");
  copyFileSync(join(REPO, "package.json"), join(app, "package.json"));
});

afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  await sink?.close();
  await redis?.cleanup();
  if (app) rmSync(app, { recursive: true, force: true });
});

/** The test users, with hashed tokens as production demands. */
function writeHashedUsers(dir: string): string {
  const file = join(dir, "users.json");
  const users = Object.entries(USERS).map(([k, u]) => ({ ...u, tokenSha256: sha256(tokenOf(k as UserKey)) }));
  writeFileSync(file, JSON.stringify({ users }));
  return file;
}

async function until<T>(what: string, deadlineMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (child?.exitCode != null) throw new Error(`airlock exited with ${child.exitCode} before ${what}: ${stderr.slice(-3000)}`);
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`no ${what} within ${deadlineMs} ms: ${stderr.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

it("starts from the build with plain node, works, and stops on SIGTERM", async () => {
  expect(existsSync(join(app, "dist/src/main.js"))).toBe(true);
  expect(existsSync(join(app, "dist/src/main.ts"))).toBe(false);
  expect(existsSync(join(app, "dist/src/store/lua/submit.lua"))).toBe(true);

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  // As the Dockerfile's ENTRYPOINT, from the image's working directory, in production mode.
  child = spawn(process.execPath, ["--max-old-space-size=512", "dist/src/main.js"], {
    cwd: app,
    env: {
      PATH: process.env.PATH ?? "",
      NODE_ENV: "production",
      LOG_LEVEL: "warn",
      PORT: String(port),
      REDIS_URL: redis.url,
      SMTP_URL: sink.url,
      USERS_FILE: writeHashedUsers(app),
      LINK_SECRET: "compiled-start-secret-0123456789abcdef0123",
      AUDIT_SECRET: "compiled-audit-secret-0123456789abcdef0123",
      HOLD_MIN_SECONDS: "60",
    },
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-20_000)));
  const exited = new Promise<number | null>((res) => child!.once("exit", (code) => res(code)));

  const ready = await until("/readyz", 10_000, () => fetch(`${url}/readyz`).then((r) => (r.ok ? r.json() : undefined), () => undefined));
  expect(ready).toEqual({ ok: true, redis: "up" });

  // templates/static is found from dist/src/mail/render.js
  expect((await fetch(`${url}/static/dashboard.js`)).status).toBe(200);
  // The Lua scripts (submit) run, and the worker renders the approval request from templates/notify.
  const submitted = await api(url, "author", "POST", "/api/messages", { subject: "Compiled", text: "From dist.", audience: { addresses: ["team@corp.example"] } });
  expect(submitted.status, JSON.stringify(submitted.body)).toBe(201);
  const request = await until("approval request", 10_000, async () => sink.received.find((r) => r.to.includes("approver1@corp.example")));
  expect(request.mail.subject).toContain("Compiled");

  const t0 = Date.now();
  child.kill("SIGTERM");
  expect(await exited).toBe(0);
  expect(Date.now() - t0).toBeLessThan(10_000);
  expect(stderr).not.toMatch(/"level":(50|60)/);
}, 30_000);
