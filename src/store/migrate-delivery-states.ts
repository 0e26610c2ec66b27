/**
 * One-time upgrade of the delivery states written before commit 3470d4e: a hash address -> letter
 * (`{airlock}:msg:<id>:delivery`, `…:correction`) became one byte per recipient index in a string
 * (`…:states`, `…:correction-states`). Read by the new code, an old hash would look like "nobody
 * sent": a message still sending would send everyone again, and a recall of a sent one would
 * correct nobody. So at start, before any worker runs, each old hash is copied into the new form
 * (same letters: i, s, f, k) and deleted.
 *
 * Run by every process at start and cheap after the first time: a marker records that the Redis
 * is in the new form. Stop every process of the old version first: one still running could write
 * an old hash after the migration.
 */
import type { Redis } from "ioredis";
import { keys, PREFIX } from "./keys.js";

/** `{airlock}:schema`: 2 once no delivery state of the old form is left. */
const SCHEMA_KEY = `${PREFIX}:schema`;
const SCHEMA_VERSION = "2";

/**
 * KEYS: 1 the old hash (address -> letter), 2 the new string (byte per index), 3 the frozen recipients zset.
 * Returns the number of states moved. Walks the recipients by index, 1,000 at a time; a byte the
 * new code already wrote is kept (a state never goes back to queued). Deletes the old hash.
 */
const MIGRATE_SCRIPT = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('ZCARD', KEYS[3])
local moved = 0
for start = 0, n - 1, 1000 do
  local members = redis.call('ZRANGE', KEYS[3], start, start + 999)
  local old = redis.call('HMGET', KEYS[1], unpack(members))
  local current = redis.call('GETRANGE', KEYS[2], start, start + #members - 1)
  local bytes, any = {}, false
  for i = 1, #members do
    local now = string.sub(current, i, i)
    if now ~= '' and now ~= '\\0' then bytes[i] = now
    elseif old[i] then bytes[i] = old[i]; any = true; moved = moved + 1
    else bytes[i] = '\\0' end
  end
  if any then redis.call('SETRANGE', KEYS[2], start, table.concat(bytes)) end
end
redis.call('DEL', KEYS[1])
return moved
`;

const OLD_FORMS = [
  { suffix: ":delivery", to: keys.delivery },
  { suffix: ":correction", to: keys.correction },
] as const;

/** Moves every old-form delivery state; answers how many messages' hashes were moved. */
export async function migrateDeliveryStates(redis: Redis, log: (line: string) => void): Promise<number> {
  if ((await redis.get(SCHEMA_KEY)) === SCHEMA_VERSION) return 0;
  let hashes = 0;
  for (const form of OLD_FORMS) {
    let cursor = "0";
    do {
      const [next, found] = await redis.scan(cursor, "MATCH", `${PREFIX}:msg:*${form.suffix}`, "COUNT", 1000, "TYPE", "hash");
      cursor = next;
      for (const key of found) {
        const id = key.slice(`${PREFIX}:msg:`.length, -form.suffix.length);
        if (!/^[1-9][0-9]{0,15}$/.test(id)) continue;
        const moved = Number(await redis.eval(MIGRATE_SCRIPT, 3, key, form.to(id), keys.recipients(id)));
        log(`message ${id}: ${moved} delivery states${form.suffix === ":correction" ? " of the correction" : ""} moved to the per-index form`);
        hashes += 1;
      }
    } while (cursor !== "0");
  }
  await redis.set(SCHEMA_KEY, SCHEMA_VERSION);
  return hashes;
}
