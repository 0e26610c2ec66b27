/**
 * The halted mail of a staged send's signal halt (SPEC "Staged sends": a halt "tells ops, the
 * approvers and the author what was seen"), against the real service, Redis and SMTP sink: a send
 * staged by its size goes through its seed cohort and canary, waits, and its third human reply
 * halts it; the mail says the wave, the counts against their thresholds, the evidence and what to
 * do. The signals are recorded through the store's SignalSink, as the inbound listener and the
 * report link record them (their own tests: inbound-signals, report-link).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startAirlock, USERS, type TestAirlock } from "../support/airlock.js";

let a: TestAirlock;
const team = Array.from({ length: 20 }, (_, i) => `member${String(i).padStart(2, "0")}@corp.example`);
const XSS = `<script>alert("x")</script>`;
const EVIL = "https://evil.example/continue";

beforeAll(async () => {
  a = await startAirlock({
    HOLD_MIN_SECONDS: "1",
    WAVES_THRESHOLD: "10",
    CANARY_MIN_RECIPIENTS: "3",
    // The wait outlasts the test: the rest never starts by itself.
    CANARY_WAIT_MINUTES: "600",
    SIGNAL_REPLIES: "3",
    SIGNAL_REPORTS: "5",
    SIGNAL_BOUNCE_PERCENT: "50",
  });
  expect((await a.call("author", "POST", "/api/audiences", { name: "team", recipients: team.map((email) => ({ email })) })).status).toBe(201);
});
afterAll(async () => a?.stop());

const get = async (id: string) => (await a.call("ops", "GET", `/api/messages/${id}`)).body;
const haltedMail = (to: string, subject: string) =>
  a.sink.received.find((r) => r.to.includes(to) && (r.mail.subject ?? "").startsWith("[Airlock] Halted") && (r.mail.subject ?? "").includes(subject));

describe("a signal halt is mailed with what was seen", () => {
  it("says the wave, the counts against their thresholds, the evidence and what to do, to ops, the author and the approver", async () => {
    const subject = "Staged town hall";
    const created = await a.call("author", "POST", "/api/messages", { subject, text: "Town hall on Friday at 10.", audience: { lists: ["team"] }, holdMinutes: 0.05 });
    expect(created.status).toBe(201);
    const id = created.body.id as string;
    expect((await a.call("approver1", "POST", `/api/messages/${id}/approve`, { revision: 1 })).status).toBe(200);
    const waiting = await a.until("the wait after the canary", async () => {
      const m = await get(id);
      return m.waves?.phase === "wait" ? m : false;
    });
    const early = waiting.waves.seed + waiting.waves.canary;
    expect(waiting.waves.canary).toBeGreaterThanOrEqual(3);

    const record = async (kind: "reply" | "autoReply" | "report" | "bounce", evidence: object, dedupe: string) => {
      const r = await a.rt.store.record(id, kind, evidence, dedupe);
      expect(r).toMatchObject({ ok: true, counted: true });
      return r;
    };
    await record("bounce", { index: 7, from: "member07@corp.example", status: "5.1.1", diagnostic: "smtp; 550 5.1.1 user unknown" }, "bounce:7");
    await record("report", { excerpt: `Wrong date & ${XSS}` }, "report:r1");
    await record("autoReply", { from: "member02@corp.example", excerpt: "I am out of the office." }, "reply:a1");
    await record("reply", { from: "member03@corp.example", excerpt: `Is this for me?\n${EVIL}\n${XSS}` }, "reply:1");
    await record("reply", { from: "member04@corp.example", excerpt: "Friday is a holiday." }, "reply:2");
    expect(await record("reply", { from: "member05@corp.example" }, "reply:3")).toMatchObject({ halted: true });

    const halted = await get(id);
    expect(halted.paused).toMatchObject({ by: "airlock", reason: "signal: 3 human replies to the early waves" });
    const delivered = halted.counts.sent + halted.counts.inFlight;
    expect(delivered).toBeGreaterThan(0);

    const notice = await a.until("halted mail to ops", () => haltedMail(USERS.ops.email, subject));
    const text = notice.mail.text as string;
    const html = notice.mail.html as string;
    expect(text).toContain("Airlock halted the sending of this message on");
    expect(text).toContain("its early waves showed a problem");
    expect(text).toContain("> signal: 3 human replies to the early waves");
    expect(text).toContain(
      `The send is in the wait after the canary. Waves: seed cohort ${waiting.waves.seed === 1 ? "1 recipient" : `${waiting.waves.seed} recipients`}, canary ${waiting.waves.canary} recipients, the rest ${waiting.waves.rest} recipients (not started).`,
    );
    expect(text).toContain(
      [
        "- Human replies: 3 (threshold 3) <- halted the send",
        "- Problem reports: 1 (threshold 5)",
        `- Bounces: 1 of ${early} early recipients (threshold 50%)`,
        `- Permanent SMTP failures: 0 of ${early} early recipients (threshold 2%)`,
        "- Automatic replies (out of office and the like): 1, not counted",
      ].join("\n"),
    );
    // The evidence, oldest first; what recipients wrote quoted, never a line of its own.
    expect(text).toMatch(/Human replies:\n- member03@corp\.example, [^\n]+ UTC:\n> Is this for me\?\n> https:\/\/evil\.example\/continue\n> <script>/);
    expect(text).toMatch(/- member04@corp\.example, [^\n]+ UTC:\n> Friday is a holiday\./);
    expect(text).toMatch(/- member05@corp\.example, [^\n]+ UTC \(no text\)/);
    expect(text.split("\n")).not.toContain(EVIL);
    expect(text).toMatch(/Problem reports:\n- [^\n]+ UTC:\n> Wrong date & <script>/);
    expect(text).toMatch(/Bounces:\n- member07@corp\.example, [^\n]+ UTC: 5\.1\.1 \(smtp; 550 5\.1\.1 user unknown\)/);
    expect(text).not.toContain("Permanent SMTP failures:\n");
    expect(text).not.toContain("out of the office.");
    expect(text).toContain(
      `What to do: Continue (ops) starts the next wave now (the rest, or the canary if the seed cohort is still going); or recall it: the correction goes only to the ${delivered} ${delivered === 1 ? "person" : "people"} who received it. Both are on the dashboard:\n${a.rt.config.PUBLIC_URL}/messages/${id}\n`,
    );
    expect(html).not.toMatch(/<script/i);
    expect(html).toContain("Wrong date &amp; &lt;script&gt;");
    expect(html).toContain("Is this for me?");
    expect(html).toContain(`<a href="${a.rt.config.PUBLIC_URL}/messages/${id}" style="color:#1d4ed8;">Open it on the dashboard</a> to do either.`);

    for (const who of [USERS.author.email, USERS.approver1.email]) {
      const mail = await a.until(`halted mail to ${who}`, () => haltedMail(who, subject));
      expect(mail.mail.text).toContain("- Human replies: 3 (threshold 3) <- halted the send");
    }
  });
});
