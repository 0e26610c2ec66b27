import { simpleParser } from "mailparser";
import { describe, expect, it } from "vitest";
import { audienceToHeader, buildMime, newMessageId, threadIndex } from "../../src/mail/mime.js";

const base = {
  from: "Internal Communications <comms@corp.example>",
  toHeader: audienceToHeader(["all-employees"], 0, "corp.example"),
  subject: "Delete TikTok — today",
  html: "<p>Hello <b>all</b></p>",
  text: "Hello all\n",
  messageId: "<airlock.42.00ff@corp.example>",
  date: new Date("2020-07-10T14:05:00Z"),
};

describe("buildMime", () => {
  it("builds the original with the anti-autoreply headers and the audience as To", async () => {
    const raw = await buildMime(base);
    const m = await simpleParser(raw);
    expect(m.subject).toBe(base.subject);
    expect(m.messageId).toBe(base.messageId);
    expect(m.from?.text).toMatch(/^"?Internal Communications"? <comms@corp\.example>$/);
    expect([m.to].flat()[0]?.text).toMatch(/^"?All employees"? <all-employees@corp\.example>$/);
    expect(m.date?.toISOString()).toBe("2020-07-10T14:05:00.000Z");
    expect(m.headers.get("auto-submitted")).toBe("auto-generated");
    expect(m.headers.get("x-auto-response-suppress")).toBe("All");
    expect(m.headers.get("thread-topic")).toBe("=?UTF-8?Q?Delete_TikTok_=E2=80=94_today?="); // RFC 2047, as Subject
    expect(m.headers.get("thread-index")).toBe(threadIndex(base.messageId, base.date));
    expect(m.inReplyTo).toBeUndefined();
    expect(m.text?.trim()).toBe("Hello all");
    expect(m.html).toContain("<p>Hello <b>all</b></p>");
    // Nothing that would reveal or reach the envelope recipients.
    expect(raw.toString("latin1")).not.toMatch(/^(bcc|cc):/im);
  });

  it("threads a correction under the original for standard clients and Outlook", async () => {
    const original = base.messageId;
    const raw = await buildMime({
      ...base,
      subject: "Correction: Delete TikTok — today",
      messageId: "<airlock-correction.42.11aa@corp.example>",
      inReplyTo: original,
      date: new Date("2020-07-10T16:00:00Z"),
    });
    const m = await simpleParser(raw);
    expect(m.subject).toBe("Correction: Delete TikTok — today");
    expect(m.inReplyTo).toBe(original);
    expect(m.references).toBe(original);
    // mailparser leaves unknown headers RFC 2047-encoded: compare with the original's encoded Subject.
    const header = (b: Buffer, name: string) => new RegExp(`^${name}: (.*)\r$`, "m").exec(b.toString("latin1"))?.[1];
    expect(header(raw, "Thread-Topic")).toBe(header(await buildMime(base), "Subject"));
    const index = Buffer.from(String(m.headers.get("thread-index")), "base64");
    expect(index.length).toBe(22);
    expect(index[0]).toBe(0x01);
    // Same conversation GUID as every copy of the original, whenever each was built.
    const originalIndex = Buffer.from(threadIndex(original, base.date), "base64");
    expect(index.subarray(6).equals(originalIndex.subarray(6))).toBe(true);
    expect(index.subarray(1, 6).equals(originalIndex.subarray(1, 6))).toBe(false);
  });

  it("keeps a longer References chain and takes the thread GUID from its root", async () => {
    const root = "<airlock.1.aa@corp.example>";
    const raw = await buildMime({ ...base, inReplyTo: "<airlock.2.bb@corp.example>", references: [root, "<airlock.2.bb@corp.example>"] });
    const m = await simpleParser(raw);
    expect(m.references).toEqual([root, "<airlock.2.bb@corp.example>"]);
    const guid = (v: string) => Buffer.from(v, "base64").subarray(6).toString("hex");
    expect(guid(String(m.headers.get("thread-index")))).toBe(guid(threadIndex(root, new Date(0))));
  });

  it("uses CRLF line endings throughout, so the same bytes go out in every transaction", async () => {
    const raw = await buildMime(base);
    expect(raw.toString("latin1")).toMatch(/\r\n\r\n/);
    expect(raw.toString("latin1")).not.toMatch(/[^\r]\n/);
  });

  for (const field of ["subject", "from", "toHeader"] as const) {
    for (const bad of ["\r\nBcc: victim@corp.example", "\nX-Evil: 1", "a\u0000b", "tab\there", "a\u2028b"]) {
      it(`refuses ${JSON.stringify(bad)} in ${field}`, async () => {
        await expect(buildMime({ ...base, [field]: `x ${bad}` })).rejects.toThrow(/control character/);
      });
    }
  }

  it("refuses malformed Message-IDs", async () => {
    await expect(buildMime({ ...base, messageId: "<a@b>\r\nBcc: x@y" })).rejects.toThrow(/Message-ID/);
    await expect(buildMime({ ...base, inReplyTo: "not-an-id" })).rejects.toThrow(/Message-ID/);
  });
});

describe("threadIndex", () => {
  it("is 22 bytes: 0x01, the top 40 bits of the FILETIME, a hash-derived GUID", () => {
    const d = new Date("2020-07-10T14:05:00Z");
    const b = Buffer.from(threadIndex("<x@y>", d), "base64");
    expect(b.length).toBe(22);
    expect(b[0]).toBe(1);
    const filetime = (BigInt(d.getTime()) + 11_644_473_600_000n) * 10_000n;
    expect(BigInt(b.readUIntBE(1, 5))).toBe(filetime >> 24n);
    expect(threadIndex("<x@y>", d)).toBe(threadIndex("<x@y>", d));
    expect(threadIndex("<x@y>", d)).not.toBe(threadIndex("<x@z>", d));
  });
});

describe("newMessageId", () => {
  it("is <airlock.ID.RANDOMHEX@domain>, unique per call", () => {
    const a = newMessageId("corp.example", "42");
    expect(a).toMatch(/^<airlock\.42\.[0-9a-f]{16}@corp\.example>$/);
    expect(newMessageId("corp.example", "42")).not.toBe(a);
  });
  it("refuses ids and domains that could break the header", () => {
    expect(() => newMessageId("corp.example>", "1")).toThrow();
    expect(() => newMessageId("corp.example", "1 2")).toThrow();
  });
});

describe("audienceToHeader", () => {
  it("names each list, never the explicit addresses", () => {
    expect(audienceToHeader(["all-employees"], 0, "corp.example")).toBe(`"All employees" <all-employees@corp.example>`);
    expect(audienceToHeader(["all-employees", "contractors-emea"], 3, "corp.example")).toBe(
      `"All employees" <all-employees@corp.example>, "Contractors emea" <contractors-emea@corp.example>`,
    );
  });
  it("is the empty group when there are only explicit addresses", async () => {
    const h = audienceToHeader([], 5, "corp.example");
    expect(h).toBe("Undisclosed recipients:;");
    const raw = (await buildMime({ ...base, toHeader: h })).toString("latin1");
    expect(raw).toMatch(/^To: Undisclosed recipients:;\r$/m);
  });
});
