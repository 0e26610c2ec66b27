/**
 * Sessions are bound to the credential they were started with: rotating a user's token or removing
 * the user in USERS_FILE ends their dashboard sessions at the next request, without a restart
 * (the file is re-read when it changes). A file that does not parse changes nothing.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { USERS_FILE_CHECK_MS } from "../../src/auth/users.js";
import { startAirlock, type TestAirlock } from "../support/airlock.js";
import { dashboardClient } from "../support/dashboard-client.js";

let a: TestAirlock;
beforeAll(async () => {
  a = await startAirlock();
});
afterAll(async () => a?.stop());

const { signIn } = dashboardClient(() => a.url);
type Entry = { email: string; token?: string; roles: string[] };
const readUsers = () => JSON.parse(readFileSync(a.rt.usersFile!, "utf8")) as { users: Entry[] };
const writeUsers = (f: { users: Entry[] }) => writeFileSync(a.rt.usersFile!, JSON.stringify(f));
/** Signed in: the front page answers 200; signed out: a redirect to the sign-in page. */
const signedIn = async (b: { get(p: string): Promise<{ status: number }> }) => (await b.get("/")).status === 200;
const deadline = 10 * USERS_FILE_CHECK_MS;

describe("sessions and USERS_FILE", () => {
  it("ends a session when its user's token is rotated, and the new token signs in", async () => {
    const ops = await signIn("ops");
    const other = await signIn("author");
    expect(await signedIn(ops)).toBe(true);
    const f = readUsers();
    f.users.find((u) => u.email === "ops@corp.example")!.token = "rotated-token-for-ops-0123456789";
    writeUsers(f);
    await a.until("session ended", async () => !(await signedIn(ops)), deadline);
    expect(await signedIn(other)).toBe(true); // others are not touched
    // The old token no longer works for the API either; the new one does.
    expect((await a.call("ops", "GET", "/api/messages")).status).toBe(401);
    const res = await fetch(`${a.url}/api/messages`, { headers: { authorization: "Bearer rotated-token-for-ops-0123456789" } });
    expect(res.status).toBe(200);
  });

  it("ends a removed user's session, and ignores a file that does not parse", async () => {
    const author2 = await signIn("author2");
    const approver = await signIn("approver2");
    writeFileSync(a.rt.usersFile!, "{ not json");
    // Not taken (what the watcher does on a change): the users stay as they were.
    expect(() => a.rt.users.reload(a.rt.usersFile!)).toThrow(/cannot be read as JSON/);
    expect(a.rt.users.byAddress("author2@corp.example")).not.toBeNull();
    expect(await signedIn(author2)).toBe(true);
    const f = { users: (JSON.parse(JSON.stringify(originalUsers)) as { users: Entry[] }).users.filter((u) => u.email !== "author2@corp.example") };
    writeUsers(f);
    await a.until("removed user's session ended", async () => !(await signedIn(author2)), deadline);
    expect(await signedIn(approver)).toBe(true);
  });
});

let originalUsers: unknown;
beforeAll(() => {
  originalUsers = readUsers();
});
