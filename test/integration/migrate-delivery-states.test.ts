/** Delivery states of the form before 3470d4e (hash address -> letter) are moved to one byte per index at start. */
import { expect, it } from "vitest";
import { keys, PREFIX } from "../../src/store/keys.js";
import { migrateDeliveryStates } from "../../src/store/migrate-delivery-states.js";
import { redisForThisFile } from "../support/redis.js";

const r = redisForThisFile();

const address = (i: number) => `p${String(i).padStart(5, "0")}@corp.example`;

it("moves each old hash into the per-index string, keeps bytes the new code wrote, deletes the hash, and runs once", async () => {
  const id = "41";
  const n = 2500; // more than one slice of 1,000
  for (let i = 0; i < n; i += 500) await r.redis.zadd(keys.recipients(id), ...Array.from({ length: 500 }, (_, j) => [0, address(i + j)]).flat());
  const old = { 0: "s", 1: "f", 5: "i", 999: "i", 1000: "s", 2499: "k" } as Record<number, string>;
  await r.redis.hset(`${PREFIX}:msg:${id}:delivery`, ...Object.entries(old).flatMap(([i, st]) => [address(Number(i)), st]));
  await r.redis.setrange(keys.delivery(id), 5, "s"); // written by the new code after the upgrade: wins over the old "i"
  await r.redis.hset(`${PREFIX}:msg:${id}:correction`, address(0), "s");
  await r.redis.hset(`${PREFIX}:msg:notanid:delivery`, "x", "s"); // not a message of ours: left alone
  await r.redis.set(`${PREFIX}:msg:42:delivery`, "not a hash"); // not of the old form: left alone
  const lines: string[] = [];

  expect(await migrateDeliveryStates(r.redis, (l) => lines.push(l))).toBe(2);

  const bytes = await r.redis.getBuffer(keys.delivery(id));
  const at = (i: number) => String.fromCharCode(bytes![i] ?? 0);
  expect([0, 1, 5, 999, 1000, 2499].map(at)).toEqual(["s", "f", "s", "i", "s", "k"]);
  expect(bytes!.length).toBe(2500);
  expect([...bytes!].filter((b) => b !== 0)).toHaveLength(6);
  const correction = (await r.redis.getBuffer(keys.correction(id)))!; // a zero byte is "queued", as past the end
  expect([correction[0], correction.subarray(1).every((b) => b === 0)]).toEqual(["s".charCodeAt(0), true]);
  expect(await r.redis.exists(`${PREFIX}:msg:${id}:delivery`, `${PREFIX}:msg:${id}:correction`)).toBe(0);
  expect(await r.redis.exists(`${PREFIX}:msg:notanid:delivery`, `${PREFIX}:msg:42:delivery`)).toBe(2);
  expect(lines).toEqual([`message ${id}: 5 delivery states moved to the per-index form`, `message ${id}: 1 delivery states of the correction moved to the per-index form`]);

  // Marked done: the next start does not scan again.
  await r.redis.hset(`${PREFIX}:msg:${id}:delivery`, address(3), "s");
  expect(await migrateDeliveryStates(r.redis, () => {})).toBe(0);
  expect(await r.redis.exists(`${PREFIX}:msg:${id}:delivery`)).toBe(1);
});
