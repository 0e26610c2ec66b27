/**
 * `npm run audit:verify [-- --anchor "<entry id> <seal>"]`: checks the audit trail of the Redis at
 * REDIS_URL (in development, the one `npm start` spawned, redis://127.0.0.1:6390) with the seals'
 * key AUDIT_SECRET (in development, the one kept in ./data/audit-secret). An anchor is a seal head
 * noted earlier (the service logs one a minute: "audit trail sealed up to ..."); it must still be
 * in the trail. Exit 0 intact, 1 tampered, 2 could not check.
 */
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { Redis } from "ioredis";
import { verifyAudit } from "./verify.js";

const { values } = parseArgs({ options: { anchor: { type: "string" } } });
const url = process.env.REDIS_URL || "redis://127.0.0.1:6390";
const secret = process.env.AUDIT_SECRET || (existsSync("data/audit-secret") ? readFileSync("data/audit-secret", "utf8").trim() : "");
if (secret.length < 32) {
  console.error("cannot check the audit trail: set AUDIT_SECRET (the service's, at least 32 characters)");
  process.exit(2);
}
// One attempt, no reconnect loop: a checker that cannot reach Redis should say so and stop.
const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, connectionName: "airlock-audit-verify" });
redis.on("error", () => {}); // reported by the connect() below
try {
  await redis.connect();
  const r = await verifyAudit(redis, { secret, anchor: values.anchor });
  console.log(
    `${r.entries} audit entries of ${r.messages} messages checked at ${url}: ${r.ok ? "intact" : `${r.problems.length} problem(s)`}; ${r.sealed} sealed, ${r.unsealed} awaiting a seal; seal head ${r.sealHead ?? "(none)"}`,
  );
  for (const p of r.problems) console.log(`  ${p.stream} ${p.entryId}: ${p.problem}`);
  process.exitCode = r.ok ? 0 : 1;
} catch (e) {
  console.error(`cannot check the audit trail at ${url}: ${(e as Error).message}`);
  process.exitCode = 2;
} finally {
  redis.disconnect();
}
