/**
 * Composing the mail, end to end against the real service, Redis and SMTP sink: a Markdown body in
 * a house template goes out exactly as previewed (both parts byte for byte, the same digest); an
 * unknown template is refused when saved; "send me a test" reaches its author alone, marked
 * [TEST], audited, changing nothing, at most five a minute.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mimeDigest } from "../../src/mail/compose.js";
import { startAirlock, USERS, type TestAirlock, type UserKey } from "../support/airlock.js";

let a: TestAirlock;
const team = ["ann@corp.example", "ben@corp.example", "cat@corp.example"];
/** Raw bytes of every transaction, as the sink received them. */
const raws: Array<{ to: string[]; raw: Buffer }> = [];

beforeAll(async () => {
  a = await startAirlock({ COMPANY_NAME: "Corp Example", COMPANY_FOOTER: "Corp Example internal: please do not forward." });
  a.sink.behaviour.data = (to, raw) => {
    raws.push({ to, raw });
    return null;
  };
});
afterAll(async () => a?.stop());

const MARKDOWN = `# Office move

We move on **Friday**. The plan: [move plan](https://intranet.corp.example/move?a=1&b=2), questions to hr@corp.example.

1. Pack your desk
2. Label boxes with \`your name\`

<script>alert(1)</script>
`;

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
const lf = (s: string) => s.replace(/\r\n/g, "\n");
async function preview(id: string, part: "html" | "text") {
  const res = await fetch(`${a.url}/api/messages/${id}/preview?part=${part}`, { headers: { authorization: "Bearer test-token-approver1-0123456789abcdef" } });
  expect(res.status).toBe(200);
  return { body: await res.text(), digest: res.headers.get("airlock-digest") };
}
const testSend = (user: UserKey, id: string) => a.call(user, "POST", `/api/messages/${id}/test`);
const testMails = () => a.sink.received.filter((r) => (r.mail.subject ?? "").startsWith("[TEST] "));

describe("a Markdown message in a house template", () => {
  it("goes out exactly as previewed: both parts byte for byte, the digest of the bytes sent", async () => {
    const created = await a.call("author", "POST", "/api/messages", { subject: "Office move on Friday", markdown: MARKDOWN, template: "policy-notice", audience: { addresses: team } });
    expect(created.status).toBe(201);
    const m = created.body;
    const html = await preview(m.id, "html");
    const text = await preview(m.id, "text");
    expect(html.digest).toBe(m.digest);
    expect(text.digest).toBe(m.digest);
    expect(html.body).toContain("<strong>Friday</strong>");
    expect(html.body).toContain("&lt;script&gt;alert(1)&lt;/script&gt;");
    expect(html.body).not.toContain("<script>");
    expect(html.body).toContain("Policy notice");
    expect(text.body).toContain("move plan [https://intranet.corp.example/move?a=1&b=2]");
    for (const part of [html.body, text.body]) {
      expect(part).toContain("Corp Example");
      expect(part).toContain("Corp Example internal: please do not forward.");
    }

    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest })).status).toBe(200);
    await a.until("sent", async () => (await get(m.id)).state === "sent");

    const delivered = a.sink.received.filter((r) => r.mail.messageId === m.messageId);
    expect(delivered.flatMap((r) => r.to).sort()).toEqual(team);
    for (const r of delivered) {
      expect(lf(String(r.mail.html))).toBe(lf(html.body));
      expect(lf(r.mail.text ?? "")).toBe(lf(text.body));
      expect(r.mail.subject).toBe("Office move on Friday");
    }
    const sentRaw = raws.filter((r) => r.raw.includes(Buffer.from(m.messageId)));
    expect(sentRaw.length).toBeGreaterThan(0);
    for (const r of sentRaw) expect(mimeDigest(r.raw)).toBe(html.digest);
  });

  it("refuses an unknown template with a 400 naming template, on submit and on a draft save; nothing is created", async () => {
    const before = (await a.call("ops", "GET", "/api/messages?limit=200")).body.items.length;
    for (const body of [
      { subject: "s", markdown: "x", template: "no-such-template", audience: { addresses: team } },
      { subject: "s", markdown: "x", template: "no-such-template", draft: true },
    ]) {
      const r = await a.call("author", "POST", "/api/messages", body);
      expect(r.status).toBe(400);
      expect(r.body.error.details.map((d: { path: string[] }) => d.path.join("."))).toContain("body.template");
      expect(r.body.error.message).toContain("announcement");
    }
    expect((await a.call("ops", "GET", "/api/messages?limit=200")).body.items.length).toBe(before);
    // Nor may a saved draft be changed to one.
    const d = (await a.call("author", "POST", "/api/messages", { subject: "s", markdown: "x", draft: true })).body;
    const r = await a.call("author", "PUT", `/api/messages/${d.id}`, { subject: "s", markdown: "x", template: "nope" });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body.error.details)).toContain("template");
  });
});

describe("send me a test", () => {
  it("reaches the author alone, subject [TEST], built as it will go out; audited; changes no state", async () => {
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Town hall", markdown: "Town hall on *Friday* at 10.", audience: { addresses: team } })).body;
    const before = await get(m.id);
    const receivedBefore = a.sink.received.length;

    const r = await testSend("author", m.id);
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ to: USERS.author.email, revision: 1, digest: m.digest, subject: "[TEST] Town hall" });

    const ofThis = () => a.sink.received.slice(receivedBefore).filter((x) => String(x.mail.headers.get("x-airlock-test") ?? "").startsWith(`message=${m.id};`));
    await a.until("the test mail", () => ofThis().length > 0);
    const mails = ofThis();
    expect(mails).toHaveLength(1);
    const mail = mails[0]!;
    expect(mail.to).toEqual([USERS.author.email]);
    expect(mail.mail.subject).toBe("[TEST] Town hall");
    expect(mail.mail.headers.get("x-airlock-test")).toBe(`message=${m.id}; revision=1; digest=${m.digest}`);
    // Its own Message-ID: a mailbox may drop the real message later as a duplicate of the test otherwise.
    expect(mail.mail.messageId).not.toBe(m.messageId);
    expect(mail.mail.messageId).toMatch(/^<airlock-test\./);
    // The same mail as will go out, but for the subject.
    const html = await preview(m.id, "html");
    const text = await preview(m.id, "text");
    expect(lf(String(mail.mail.html))).toBe(lf(html.body).replaceAll("Town hall</", "[TEST] Town hall</"));
    expect(lf(mail.mail.text ?? "")).toBe(lf(text.body).replace(/^Town hall$/m, "[TEST] Town hall"));

    // Nobody of the audience got anything (approvers get their approval request, as for any submit); the message did not change.
    expect(a.sink.received.slice(receivedBefore).flatMap((x) => x.to).filter((to) => team.includes(to))).toEqual([]);
    expect(await get(m.id)).toEqual(before);
    const events = (await a.call("author", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string; actor: string; from: string; to: string; detail: unknown }>;
    const audited = events.filter((e) => e.action === "testSend");
    expect(audited).toHaveLength(1);
    expect(audited[0]).toMatchObject({ actor: USERS.author.email, from: "pending_approval", to: "pending_approval" });
    const detail = typeof audited[0]!.detail === "string" ? JSON.parse(audited[0]!.detail) : audited[0]!.detail;
    expect(detail).toEqual({ revision: 1, digest: m.digest, to: USERS.author.email });
  });

  it("works on a draft with content, refuses a draft without a body (400 naming it), others' messages (403), sent ones (409)", async () => {
    const empty = (await a.call("author2", "POST", "/api/messages", { subject: "Later", draft: true })).body;
    const r = await testSend("author2", empty.id);
    expect(r.status).toBe(400);
    expect(r.body.error.details.map((d: { path: string[] }) => d.path.join("."))).toEqual(["draft.text"]);
    expect(r.body.error.message).toContain("markdown, or text");

    const draft = (await a.call("author2", "POST", "/api/messages", { subject: "Draft news", text: "Plain draft.", draft: true })).body;
    expect((await testSend("author2", draft.id)).status).toBe(200);
    expect(testMails().at(-1)).toMatchObject({ to: [USERS.author2.email] });
    expect(testMails().at(-1)!.mail.text).toContain("Plain draft.");
    expect((await get(draft.id)).state).toBe("draft");

    expect((await testSend("author", draft.id)).status).toBe(404); // a draft is its author's alone
    const pending = (await a.call("author2", "POST", "/api/messages", { subject: "Pending", text: "x", audience: { addresses: team } })).body;
    expect((await testSend("author", pending.id)).status).toBe(403);
    expect((await testSend("approver1", pending.id)).status).toBe(403);
  });

  it("allows five test sends a minute per author, then 429, and again once the minute has passed", async () => {
    const m = (await a.call("authorApprover", "POST", "/api/messages", { subject: "Quota", markdown: "Quota *test*.", audience: { addresses: team } })).body;
    const sentBefore = testMails().length;
    for (let i = 1; i <= 5; i++) expect((await testSend("authorApprover", m.id)).status, `test send ${i}`).toBe(200);
    const sixth = await testSend("authorApprover", m.id);
    expect(sixth.status).toBe(429);
    expect(sixth.body.error.code).toBe("rate_limited");
    await a.until("five test mails", () => testMails().length === sentBefore + 5);
    const events = (await a.call("authorApprover", "GET", `/api/messages/${m.id}/events`)).body.items as Array<{ action: string }>;
    expect(events.filter((e) => e.action === "testSend")).toHaveLength(5);
    // Another author's allowance is their own.
    const other = (await a.call("author", "POST", "/api/messages", { subject: "Other", text: "x", audience: { addresses: team } })).body;
    expect((await testSend("author", other.id)).status).toBe(200);

    a.clock.advance(61_000);
    expect((await testSend("authorApprover", m.id)).status).toBe(200);
  });

  it("refuses a message already sent (409)", async () => {
    const m = (await a.call("author", "POST", "/api/messages", { subject: "Done", text: "x", audience: { addresses: team } })).body;
    expect((await a.call("approver1", "POST", `/api/messages/${m.id}/approve`, { revision: 1, digest: m.digest })).status).toBe(200);
    await a.until("sent", async () => (await get(m.id)).state === "sent");
    expect((await testSend("author", m.id)).status).toBe(409);
  });
});
