/**
 * `npm run audit:verify`: checks the audit trail of the Redis at REDIS_URL (in development, the one
 * `npm start` spawned, redis://127.0.0.1:6390). Exit 0 intact, 1 tampered, 2 could not check.
 */
import { Redis } from "ioredis";
import { verifyAudit } from "./verify.js";

const url = process.env.REDIS_URL || "redis://127.0.0.1:6390";
// One attempt, no reconnect loop: a checker that cannot reach Redis should say so and stop.
const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, connectionName: "airlock-audit-verify" });
redis.on("error", () => {}); // reported by the connect() below
try {
  await redis.connect();
  const r = await verifyAudit(redis);
  console.log(`${r.entries} audit entries of ${r.messages} messages checked at ${url}: ${r.ok ? "intact" : `${r.problems.length} problem(s)`}`);
  for (const p of r.problems) console.log(`  ${p.stream} ${p.entryId}: ${p.problem}`);
  process.exitCode = r.ok ? 0 : 1;
} catch (e) {
  console.error(`cannot check the audit trail at ${url}: ${(e as Error).message}`);
  process.exitCode = 2;
} finally {
  redis.disconnect();
}
