/**
 * Audiences have an owner and versions (shared/SPEC.md "Recipients"): only the owner or an admin
 * replaces or deletes a list, every version is recorded with its added and removed counts, each
 * change is an entry of the audit chain (which still verifies), and a message records the version
 * of each list it froze.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMIT_SCRIPT } from "../../src/audiences/audience-scripts.js";
import { verifyAudit } from "../../src/audit/verify.js";
import { keys } from "../../src/store/keys.js";
import { startAirlock, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";

let a: TestAirlock;
beforeAll(async () => {
  a = await startAirlock();
});
afterAll(async () => a?.stop());

const upload = (who: UserKey, name: string, emails: string[]) => a.call(who, "POST", "/api/audiences", { name, recipients: emails.map((email) => ({ email })) });
const uploadCsv = (who: UserKey, name: string, emails: string[]) =>
  a.call(who, "POST", `/api/audiences?name=${name}`, ["email", ...emails].join("\n") + "\n", { "content-type": "text/csv" });
const show = async (name: string) => (await a.call("ops", "GET", `/api/audiences/${name}`)).body;
const members = (name: string) => a.rt.redis.zrange(keys.audience(name), "0", "-1");
const at = (domain: string, ...locals: string[]) => locals.map((l) => `${l}@${domain}`);
/** Whether stream entry id `x` comes before `y`. */
const isBefore = (x: string, y: string) => {
  const [xm, xs] = x.split("-").map(BigInt) as [bigint, bigint];
  const [ym, ys] = y.split("-").map(BigInt) as [bigint, bigint];
  return xm < ym || (xm === ym && xs < ys);
};

interface Entry {
  message: string;
  actor: string;
  action: string;
  from: string;
  to: string;
  /** `detail`, parsed. */
  d: Record<string, unknown>;
}

/** The audience entries of the global audit chain, oldest first, with their detail parsed. */
async function audienceEntries(name: string): Promise<Entry[]> {
  const all = await a.rt.redis.xrange(keys.auditAll(), "-", "+");
  return all
    .map(([, flat]) => Object.fromEntries(Array.from({ length: flat.length / 2 }, (_, i) => [flat[2 * i]!, flat[2 * i + 1]!])) as Record<string, string>)
    .filter((f) => f.action?.startsWith("audience"))
    .map((f) => ({ message: f.message!, actor: f.actor!, action: f.action!, from: f.from!, to: f.to!, d: JSON.parse(f.detail!) as Record<string, unknown> }))
    .filter((f) => f.d.audience === name);
}

describe("owners", () => {
  it("lets authors and admins create lists, not approvers or ops", async () => {
    expect((await upload("approver1", "by-approver", at("corp.example", "ann"))).status).toBe(403);
    expect((await upload("ops", "by-ops", at("corp.example", "ann"))).status).toBe(403);
    expect((await show("by-approver")).error.code).toBe("not_found");
    const created = await upload("author", "owned", at("corp.example", "a", "b", "c"));
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ name: "owned", size: 3, owner: USERS.author.email, by: USERS.author.email, version: 1, added: 3, removed: 0 });
  });

  it("refuses another author's replacement, JSON or CSV, with 403 naming the owner, and changes nothing", async () => {
    const before = await show("owned");
    for (const r of [await upload("author2", "owned", at("corp.example", "x")), await uploadCsv("author2", "owned", at("corp.example", "x"))]) {
      expect(r.status).toBe(403);
      expect(r.body.error.code).toBe("forbidden");
      expect(r.body.error.message).toContain(USERS.author.email);
      expect(r.body.error.details).toEqual({ owner: USERS.author.email });
    }
    // A JSON body naming the list after its recipients is refused at commit, just the same.
    const late = await a.call("author2", "POST", "/api/audiences", '{"recipients":[{"email":"x@corp.example"}],"name":"owned"}');
    expect(late.status).toBe(403);
    expect(await show("owned")).toEqual(before);
    expect(await members("owned")).toEqual(at("corp.example", "a", "b", "c"));
  });

  it("lets an admin replace it, keeping the creator as its owner", async () => {
    const r = await upload("admin", "owned", at("corp.example", "b", "c", "d"));
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ size: 3, owner: USERS.author.email, by: USERS.admin.email, version: 2, added: 1, removed: 1 });
    // The owner still replaces it after an admin did.
    expect((await uploadCsv("author", "owned", at("corp.example", "b", "c", "d", "e", "f"))).body).toMatchObject({ version: 3, added: 2, removed: 0, owner: USERS.author.email });
  });

  it("shows the owner and the versions, newest first, in GET /api/audiences/:name, and owner and version in the list", async () => {
    const info = await show("owned");
    expect(info).toMatchObject({ name: "owned", size: 5, owner: USERS.author.email, version: 3 });
    expect(info.versions.map((v: { version: number; by: string; size: number; added: number; removed: number }) => [v.version, v.by, v.size, v.added, v.removed])).toEqual([
      [3, USERS.author.email, 5, 2, 0],
      [2, USERS.admin.email, 3, 1, 1],
      [1, USERS.author.email, 3, 3, 0],
    ]);
    for (const v of info.versions) expect(Date.parse(v.at)).not.toBeNaN();
    const listed = (await a.call("approver1", "GET", "/api/audiences")).body.items.find((i: { name: string }) => i.name === "owned");
    expect(listed).toMatchObject({ name: "owned", size: 5, owner: USERS.author.email, version: 3 });
  });

  it("counts added and removed over more than one slice of a large list", async () => {
    const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => `u${from + i}@corp.example`);
    expect((await uploadCsv("author", "big", range(0, 2500))).body).toMatchObject({ version: 1, added: 2500, removed: 0 });
    expect((await uploadCsv("author", "big", range(1000, 3700))).body).toMatchObject({ version: 2, size: 2700, added: 1200, removed: 1000 });
  });

  it("takes an audience uploaded before owners and versions were kept as its uploader's, version 1", async () => {
    await a.rt.redis.zadd(keys.audience("legacy"), 0, "a@corp.example", 0, "b@corp.example");
    await a.rt.redis.hset(keys.audiences(), "legacy", JSON.stringify({ name: "legacy", size: 2, updatedAt: "2024-01-01T00:00:00.000Z", by: USERS.author.email }));
    expect(await show("legacy")).toMatchObject({ owner: USERS.author.email, version: 1, versions: [] });
    expect((await upload("author2", "legacy", at("corp.example", "x"))).status).toBe(403);
    expect((await upload("author", "legacy", at("corp.example", "b", "c", "d"))).body).toMatchObject({ version: 2, owner: USERS.author.email, added: 2, removed: 1 });
  });

  it("recounts at commit when the list changed after the upload counted against it", async () => {
    // What the race leaves: an upload counted 0 members in common against version 1, but version 2 is current now.
    await upload("author", "raced", at("corp.example", "a", "b"));
    await upload("author", "raced", at("corp.example", "b", "c"));
    const scratch = keys.audienceUpload("raced-test");
    await a.rt.redis.zadd(scratch, 0, "c@corp.example", 0, "d@corp.example");
    const k = [
      scratch, keys.audienceUploadDetails("raced-test"), keys.audience("raced"), keys.audienceDetails("raced"), keys.audiences(),
      keys.audienceUploadDomains("raced-test"), keys.audienceDomains("raced"), keys.audienceVersions("raced"), keys.auditAll(), keys.auditHead(),
    ];
    const answer = JSON.parse(String(await a.rt.redis.eval(COMMIT_SCRIPT, k.length, ...k, "raced", new Date().toISOString(), USERS.author.email, Date.now(), "0", "1", "0")));
    expect(answer).toMatchObject({ version: 3, size: 2, added: 1, removed: 1 });
  });
});

describe("audit trail", () => {
  it("has an entry per version, chained with the messages' entries, and the chain verifies", async () => {
    // A message's entries and audience entries interleave in one chain.
    const m = await a.call("author", "POST", "/api/messages", { subject: "Chained", text: "x", audience: { lists: ["owned"] } });
    expect(m.status).toBe(201);
    await upload("author", "owned", at("corp.example", "b", "c", "d", "e", "f", "g"));
    const entries = await audienceEntries("owned");
    expect(entries.map((e) => [e.action, e.actor, e.from, e.to, e.message, e.d.size, e.d.added, e.d.removed, e.d.owner])).toEqual([
      ["audienceCreate", USERS.author.email, "0", "1", "", 3, 3, 0, USERS.author.email],
      ["audienceReplace", USERS.admin.email, "1", "2", "", 3, 1, 1, USERS.author.email],
      ["audienceReplace", USERS.author.email, "2", "3", "", 5, 2, 0, USERS.author.email],
      ["audienceReplace", USERS.author.email, "3", "4", "", 6, 1, 0, USERS.author.email],
    ]);
    // Refused replacements left nothing in the trail.
    expect(entries.some((e) => e.actor === USERS.author2.email)).toBe(false);
    const report = await verifyAudit(a.rt.redis, { secret: a.rt.auditSecret });
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
  });
});

describe("the version a message froze", () => {
  it("is recorded with each list in the revision snapshot", async () => {
    await upload("author", "frozen-a", at("corp.example", "a", "b"));
    await upload("author", "frozen-a", at("corp.example", "a", "b", "c"));
    await upload("author2", "frozen-b", at("corp.example", "z"));
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Versions", text: "x", audience: { lists: ["frozen-a", "frozen-b"] } })).body;
    const snapshot = JSON.parse((await a.rt.redis.hget(keys.revisions(m.id), "1"))!);
    expect(snapshot.audienceCounts).toEqual([
      { name: "frozen-a", count: 3, version: 2 },
      { name: "frozen-b", count: 1, version: 1 },
    ]);
  });
});

describe("delete", () => {
  it("is refused to others with 403 naming the owner, to approvers and ops too, and changes nothing", async () => {
    await upload("author", "doomed", at("corp.example", "a", "b"));
    expect((await a.call(null, "DELETE", "/api/audiences/doomed")).status).toBe(401);
    for (const who of ["author2", "authorApprover", "approver1", "ops"] as const) {
      const r = await a.call(who, "DELETE", "/api/audiences/doomed");
      expect(r.status, who).toBe(403);
    }
    const r = await a.call("author2", "DELETE", "/api/audiences/doomed");
    expect(r.body.error.message).toContain(USERS.author.email);
    expect(await show("doomed")).toMatchObject({ size: 2, version: 1 });
    expect((await a.call("author", "DELETE", "/api/audiences/no-such-list")).status).toBe(404);
    expect((await a.call("author", "DELETE", "/api/audiences/Bad_Name")).status).toBe(400);
  });

  it("works for the owner and leaves a message that froze the list as it was", async () => {
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Before delete", text: "x", audience: { lists: ["doomed"] } })).body;
    expect(m.state).toBe("pending_approval");
    expect((await a.call("author", "DELETE", "/api/audiences/doomed")).status).toBe(204);
    expect((await show("doomed")).error.code).toBe("not_found");
    expect(await a.rt.redis.exists(keys.audience("doomed"), keys.audienceDetails("doomed"), keys.audienceDomains("doomed"))).toBe(0);
    expect((await a.call("ops", "GET", `/api/messages/${m.id}`)).body).toMatchObject({ state: "pending_approval", recipientCount: 2 });
    expect(await a.rt.redis.zcard(keys.recipients(m.id))).toBe(2);
    // A new submit naming it is refused: the list is gone.
    expect((await a.call("author", "POST", "/api/messages", { subject: "After delete", text: "x", audience: { lists: ["doomed"] } })).status).toBeGreaterThanOrEqual(400);
  });

  it("is recorded as a version, so a new list under the name continues the numbering with its own owner", async () => {
    const r = await upload("author2", "doomed", at("corp.example", "b", "c"));
    expect(r.body).toMatchObject({ owner: USERS.author2.email, version: 3, added: 2, removed: 0 });
    const versions = (await show("doomed")).versions;
    expect(versions.map((v: { version: number; size: number; removed: number; deleted?: boolean }) => [v.version, v.size, v.removed, v.deleted ?? false])).toEqual([
      [3, 2, 0, false],
      [2, 0, 2, true],
      [1, 2, 0, false],
    ]);
    expect((await audienceEntries("doomed")).map((e) => [e.action, e.actor, e.from, e.to])).toEqual([
      ["audienceCreate", USERS.author.email, "0", "1"],
      ["audienceDelete", USERS.author.email, "1", "2"],
      ["audienceCreate", USERS.author2.email, "2", "3"],
    ]);
  });

  it("works for an admin, and the chain still verifies", async () => {
    expect((await a.call("admin", "DELETE", "/api/audiences/doomed")).status).toBe(204);
    expect((await audienceEntries("doomed")).at(-1)).toMatchObject({ action: "audienceDelete", actor: USERS.admin.email, from: "3", to: "4" });
    expect(await verifyAudit(a.rt.redis, { secret: a.rt.auditSecret })).toMatchObject({ ok: true, problems: [] });
  });
});

describe("the notification dispatcher", () => {
  it("acknowledges audience entries and notifies nobody about them", async () => {
    await upload("author", "quiet", at("corp.example", "a"));
    const last = (await a.rt.redis.xrevrange(keys.auditAll(), "+", "-", "COUNT", 1))[0]![0];
    await a.until("the dispatcher read past the audience entry", async () => {
      const groups = (await a.rt.redis.xinfo("GROUPS", keys.auditAll())) as unknown[][];
      const g = groups.map((row) => Object.fromEntries(Array.from({ length: row.length / 2 }, (_, i) => [row[2 * i], row[2 * i + 1]])));
      return g.some((x) => !isBefore(String(x["last-delivered-id"]), last) && x.pending === 0) || undefined;
    });
  });
});

describe("tampering", () => {
  // Last: a doctored entry cannot be put back in its place, so the chain stays broken after this.
  it("finds an edited audience entry: the hash covers the audience's name and counts", async () => {
    const all = await a.rt.redis.xrange(keys.auditAll(), "-", "+");
    const [victimId, victim] = all.filter(([, flat]) => flat.includes("audienceReplace")).at(-1)!;
    const fields = victim.map((v, i) => (victim[i - 1] === "detail" ? v.replace('"removed":0', '"removed":1000') : v));
    expect(fields).not.toEqual(victim);
    await a.rt.redis.xdel(keys.auditAll(), victimId);
    const forgedId = await a.rt.redis.xadd(keys.auditAll(), "*", ...fields);
    const report = await verifyAudit(a.rt.redis, { secret: a.rt.auditSecret });
    expect(report.ok).toBe(false);
    expect(report.problems).toContainEqual(expect.objectContaining({ entryId: forgedId, problem: expect.stringMatching(/hash does not match/) }));
  });
});
