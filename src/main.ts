/**
 * `npm start`: everything in one process — HTTP API, workers, and in development a local
 * redis-server, demo users and the mail outbox. Signal handlers are registered here, once.
 */
import { readFileSync } from "node:fs";
import { ConfigError, loadConfig } from "./config.js";
import { createRuntime } from "./runtime.js";

const mode = (process.argv[2] ?? "all") as "all" | "api" | "worker";

async function main(): Promise<void> {
  const config = loadConfig();
  const rt = await createRuntime({ config });
  const api = mode === "worker" ? null : await rt.startApi();
  if (mode !== "api") await rt.startWorkers();
  // A worker-only process has no HTTP API: its own histograms need their own port.
  const metricsUrl = mode === "worker" && config.METRICS_PORT !== undefined ? (await rt.startMetricsServer(config.METRICS_PORT)).url : null;
  if (metricsUrl) rt.logger.info(`metrics at ${metricsUrl}`);

  let stopping = false;
  const shutdown = (signal: string) => {
    if (stopping) return;
    stopping = true;
    rt.logger.info(`${signal}: stopping`);
    // Bounded: BullMQ hands unfinished jobs back on close; never hang a deploy past 10 s.
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    void rt.stop().then(() => process.exit(0));
  };
  process.once("SIGINT", () => shutdown("SIGINT"));
  process.once("SIGTERM", () => shutdown("SIGTERM"));

  if (api && !config.production) printWelcome(api.url, rt.usersFile, rt.outboxDir);
  else rt.logger.info(`airlock ${mode} running${api ? ` at ${api.url}` : ""}`);
}

function printWelcome(url: string, usersFile: string | null, outboxDir: string | null): void {
  const users = usersFile ? (JSON.parse(readFileSync(usersFile, "utf8")) as { users: Array<{ email: string; roles: string[]; token?: string }> }).users : [];
  const author = users.find((u) => u.roles.includes("author"));
  const lines = [
    "",
    `Airlock is running. Open the dashboard: ${url}/`,
    `  and sign in with one of the tokens below (ops sees everything and the queue board).`,
    outboxDir ? `  Mail goes to the development outbox (no SMTP_URL): ${url}/outbox` : "",
    "",
    "Demo users and their tokens (development only):",
    ...users.map((u) => `  ${u.email.padEnd(26)} ${u.roles.join(",").padEnd(12)} ${u.token ?? "(hashed)"}`),
    "",
    "Try it:",
    `  curl -s -H 'Authorization: Bearer ${author?.token ?? "<token>"}' -H 'Content-Type: application/json' \\`,
    `       -d '{"subject":"Hello","text":"First message","audience":{"addresses":["team@corp.example"]}}' \\`,
    `       ${url}/api/messages`,
    "",
    outboxDir ? `No SMTP_URL: mail is written to ${outboxDir}` : "",
    "",
  ];
  process.stdout.write(lines.join("\n") + "\n");
}

main().catch((e: unknown) => {
  if (e instanceof ConfigError) process.stderr.write(`airlock: ${e.message}\n`);
  else process.stderr.write(`airlock: cannot start: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
