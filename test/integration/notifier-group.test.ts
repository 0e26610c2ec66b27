/** Where the notification dispatcher starts reading the audit trail. */
import { expect, it } from "vitest";
import { ensureNotifierGroup, NOTIFIER_GROUP } from "../../src/notify/dispatcher.js";
import { redisForThisFile } from "../support/redis.js";

const r = redisForThisFile();

const lastDelivered = async () => {
  const groups = (await r.redis.xinfo("GROUPS", "{airlock}:audit")) as Array<Array<string | number>>;
  const g = groups.map((flat) => Object.fromEntries(Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i], flat[2 * i + 1]]))).find((x) => x.name === NOTIFIER_GROUP);
  return g?.["last-delivered-id"];
};

it("starts at the beginning of a new trail, so nothing written before the first worker is missed", async () => {
  await ensureNotifierGroup(r.redis);
  expect(await lastDelivered()).toBe("0-0");
  await ensureNotifierGroup(r.redis); // a second process: no error, no move
  expect(await lastDelivered()).toBe("0-0");
});

it("starts at the end of an existing trail, so an upgrade does not mail the history again", async () => {
  await r.redis.xgroup("DESTROY", "{airlock}:audit", NOTIFIER_GROUP);
  const id = await r.redis.xadd("{airlock}:audit", "*", "message", "1", "action", "recall");
  await ensureNotifierGroup(r.redis);
  expect(await lastDelivered()).toBe(id);
});
