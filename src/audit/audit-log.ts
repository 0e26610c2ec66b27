/**
 * Audit entries that belong to no message: sign-ins and sign-outs, the settings a process started
 * with. They join the global chain by the same rule as every other entry (audit/chain.ts; the
 * Lua below is that rule without a message, as audiences/audience-scripts.ts writes it too), and
 * are sealed like the rest.
 */
import type { PurgeSettings } from "../purge/purge-settings.js";
import type { Redis } from "ioredis";
import type { Clock } from "../domain/clock.js";
import { keys } from "../store/keys.js";

/**
 * Lua: one entry of the global audit chain that belongs to no message (store/lua/prologue.lua
 * `audit()` without a message: `message` and `revision` empty). Shared with the audience scripts.
 */
export const GLOBAL_AUDIT_LUA = `
local function auditGlobal(kAll, kHead, actor, action, from, to, at, detail)
  local prev = redis.call('GET', kHead)
  if prev == false then prev = '' end
  local body = table.concat({'', '', actor, action, from, to, at, detail}, '\\n')
  local hash = redis.sha1hex(prev .. '\\n' .. body)
  redis.call('XADD', kAll, '*', 'message', '', 'revision', '', 'actor', actor, 'action', action, 'from', from,
    'to', to, 'at', at, 'detail', detail, 'prev', prev, 'hash', hash)
  redis.call('SET', kHead, hash)
end
`;

/** KEYS: 1 global audit stream, 2 audit head. ARGV: 1 actor, 2 action, 3 at (epoch ms), 4 detail. */
const APPEND_SCRIPT = `${GLOBAL_AUDIT_LUA}
auditGlobal(KEYS[1], KEYS[2], ARGV[1], ARGV[2], '', '', ARGV[3], ARGV[4])
`;

/** `signInRefused`: a sign-in that was refused (who tried, how, why); `sessionEnded`: a session Airlock ended (an OpenID Connect re-check). */
export type GlobalAction = "signIn" | "signInRefused" | "sessionEnded" | "signOut" | "settings";

export class AuditLog {
  constructor(
    private readonly redis: Redis,
    private readonly clock: Clock,
  ) {}

  async append(actor: string, action: GlobalAction, detail: Record<string, unknown>): Promise<void> {
    await this.redis.eval(APPEND_SCRIPT, 2, keys.auditAll(), keys.auditHead(), actor, action, String(this.clock.now()), JSON.stringify(detail));
  }
}

/** The settings as audited at start: secrets and URL passwords are replaced by whether they are set. */
export function auditedSettings(config: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(config)) {
    if (k === "purge") out[k] = purgeSummary(v as PurgeSettings);
    else if (/SECRET|PASSWORD/.test(k)) out[k] = v === undefined ? "unset" : "set";
    else if (typeof v === "string" && /^[a-z]+:\/\//i.test(v)) out[k] = withoutPassword(v);
    else out[k] = v;
  }
  return out;
}

/** The purge settings without their secrets (an admin password, a client secret, a private key): which connector, where, how fast. */
function purgeSummary(p: PurgeSettings): Record<string, unknown> {
  const pace = { concurrency: p.concurrency, ratePerSecond: p.ratePerSecond, notFoundRetryMinutes: p.notFoundRetryMinutes, notFoundRetryEverySeconds: p.notFoundRetryEverySeconds, correctionWaitSeconds: p.correctionWaitSeconds };
  switch (p.connector) {
    case null:
      return { connector: null };
    case "imap":
      return { connector: "imap", host: p.imap.host, port: p.imap.port, tls: p.imap.tls, adminUser: p.imap.adminUser, folders: p.imap.folders ?? "all", ...pace };
    case "graph":
      return { connector: "graph", tenantId: p.graph.tenantId, clientId: p.graph.clientId, ...pace };
    case "gmail":
      return { connector: "gmail", serviceAccount: p.gmail.serviceAccount.client_email, mode: p.gmail.mode, ...pace };
  }
}

function withoutPassword(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "redacted";
    return u.toString();
  } catch {
    return url; // not a URL after all (validated by config.ts)
  }
}
