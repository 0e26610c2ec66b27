import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { AudienceRecord } from "../../src/audiences/csv.js";
import { AudienceError } from "../../src/audiences/errors.js";
import { readJsonAudience } from "../../src/audiences/json-upload.js";

const bytes = (...parts: Array<string | number[]>) => parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p)));

async function read(chunks: Array<string | Uint8Array>): Promise<{ records: AudienceRecord[]; name: string }> {
  const upload = readJsonAudience((async function* () {
    yield* chunks;
  })());
  const records: AudienceRecord[] = [];
  for await (const r of upload.records) records.push(r);
  return { records, name: upload.name() };
}

async function refusal(chunks: Array<string | Uint8Array>): Promise<AudienceError> {
  const err = await read(chunks).then(() => null, (e: unknown) => e);
  expect(err).toBeInstanceOf(AudienceError);
  expect((err as AudienceError).code).toMatch(/^invalid_(json|name)$/);
  return err as AudienceError;
}

describe("readJsonAudience", () => {
  it("reads the recipients in order, with the name first or last", async () => {
    const recipients = [{ email: "a@corp.example", name: "Ann", department: "Ops" }, { email: "b@corp.example" }];
    expect(await read([JSON.stringify({ name: "team", recipients })])).toEqual({ name: "team", records: recipients });
    expect(await read([JSON.stringify({ recipients, name: "team-2" })])).toEqual({ name: "team-2", records: recipients });
  });

  it("takes null for a missing name or department, and an empty list (the store refuses it as empty)", async () => {
    const r = await read(['{"name":"t","recipients":[{"email":"a@corp.example","name":null,"department":null}]}']);
    expect(r.records).toEqual([{ email: "a@corp.example" }]);
    expect((await read(['{"name":"t","recipients":[]}'])).records).toEqual([]);
  });

  it("skips one byte-order mark at the start", async () => {
    expect(await read([Buffer.from([0xef, 0xbb, 0xbf]), '{"name":"t","recipients":[{"email":"a@corp.example"}]}'])).toEqual({ name: "t", records: [{ email: "a@corp.example" }] });
  });

  it("yields each chunk's records before the next chunk is read", async () => {
    const seen: string[] = [];
    const upload = readJsonAudience((async function* () {
      seen.push("chunk 1");
      yield '{"name":"t","recipients":[{"email":"a@corp.example"},';
      seen.push("chunk 2");
      yield '{"email":"b@corp.example"}]}';
    })());
    for await (const r of upload.records) seen.push(r.email);
    expect(seen).toEqual(["chunk 1", "a@corp.example", "chunk 2", "b@corp.example"]);
  });

  it("reads the same records whatever the chunk boundaries, multi-byte characters included", async () => {
    const recipient = fc.record(
      { email: fc.constantFrom("a@corp.example", "zoë@corp.example", "b@corp.example"), name: fc.string({ unit: "grapheme", maxLength: 12 }), department: fc.string({ maxLength: 8 }) },
      { requiredKeys: ["email"] },
    );
    await fc.assert(
      fc.asyncProperty(fc.array(recipient, { maxLength: 20 }), fc.boolean(), fc.array(fc.nat(), { maxLength: 10 }), async (recipients, nameFirst, cuts) => {
        const body = Buffer.from(JSON.stringify(nameFirst ? { name: "t", recipients } : { recipients, name: "t" }, null, nameFirst ? 0 : 1));
        const at = [...new Set(cuts.map((c) => c % (body.length + 1)))].sort((a, b) => a - b);
        const chunks = [0, ...at].map((start, i) => body.subarray(start, [...at, body.length][i]));
        expect(await read(chunks)).toEqual({ name: "t", records: recipients });
      }),
      { numRuns: 300 },
    );
  });

  it.each([
    ["an array body", "[]", "must be a JSON object", undefined],
    ["an unknown key", '{"name":"t","admin":true,"recipients":[]}', 'unknown key "admin"', ["admin"]],
    ["a __proto__ key", '{"__proto__":{"x":1},"name":"t","recipients":[]}', 'unknown key "__proto__"', ["__proto__"]],
    ["a repeated key", '{"name":"t","name":"u","recipients":[]}', '"name" is given twice', ["name"]],
    ["a recipient key repeated after a null", '{"name":"t","recipients":[{"email":"a@corp.example","name":null,"name":"B"}]}', '"name" is given twice', ["recipients", 0, "name"]],
    ["two byte-order marks", '\ufeff\ufeff{"name":"t","recipients":[]}', "not valid JSON", undefined],
    ["a name that is not a string", '{"name":7,"recipients":[]}', "name must be a string", ["name"]],
    ["recipients not an array", '{"name":"t","recipients":{}}', "recipients must be an array", ["recipients"]],
    ["a recipient that is not an object", '{"name":"t","recipients":[{"email":"a@corp.example"},"b@corp.example"]}', "must be an object", ["recipients", 1]],
    ["an unknown recipient key", '{"name":"t","recipients":[{"email":"a@corp.example","role":"x"}]}', 'unknown key "role"', ["recipients", 0, "role"]],
    ["a recipient __proto__", '{"name":"t","recipients":[{"__proto__":{"email":"x"}}]}', 'unknown key "__proto__"', ["recipients", 0, "__proto__"]],
    ["an email that is not a string", '{"name":"t","recipients":[{"email":["a@corp.example"]}]}', "recipients.0.email must be a string", ["recipients", 0, "email"]],
    ["a null email", '{"name":"t","recipients":[{"email":null}]}', "recipients.0.email must be a string", ["recipients", 0, "email"]],
    ["a missing email", '{"name":"t","recipients":[{"email":"a@corp.example"},{"name":"B"}]}', "recipients.1.email is missing", ["recipients", 1, "email"]],
    ["a missing name", '{"recipients":[{"email":"a@corp.example"}]}', "name is missing", ["name"]],
    ["missing recipients", '{"name":"t"}', "recipients is missing", ["recipients"]],
    ["a missing colon", '{"name" "t","recipients":[]}', "unexpected string", ["name"]],
    ["a trailing comma", '{"name":"t","recipients":[{"email":"a@corp.example"},]}', "must be an object", ["recipients", 1]],
    ["data after the object", '{"name":"t","recipients":[]} {}', "after the end", undefined],
    ["a truncated body", '{"name":"t","recipients":[{"email":"a@corp', "ends", undefined],
    ["an empty body", "", "ends before", undefined],
    ["broken JSON", '{"name":"t","recipients":[tru]}', "not valid JSON", undefined],
  ])("refuses %s, naming it", async (_what, body, message, path) => {
    const err = await refusal([body]);
    expect(err.message).toContain(message);
    if (path) expect(err.details).toEqual({ path });
  });

  it("refuses an invalid audience name as soon as it is read, before the recipients after it", async () => {
    let chunksRead = 0;
    const upload = readJsonAudience((async function* () {
      for (const c of ['{"name":"Bad Name","recipients":[', '{"email":"a@corp.example"}', "]}"]) {
        chunksRead += 1;
        yield c;
      }
    })());
    const err = await (async () => {
      for await (const _ of upload.records) void _;
    })().then(() => null, (e: unknown) => e);
    expect((err as AudienceError).code).toBe("invalid_name");
    expect(chunksRead).toBe(1);
  });

  it("refuses invalid UTF-8, also when split across chunks, and keeps valid characters split across chunks", async () => {
    expect((await refusal(bytes('{"name":"t","recipients":[{"email":"a@corp.example","name":"', [0xc3, 0x28], '"}]}'))).message).toContain("UTF-8");
    expect((await refusal(bytes('{"name":"t","recipients":[{"email":"a@corp.example","name":"', [0xe2, 0x82], '"}]}'))).message).toContain("UTF-8");
    const ok = await read(bytes('{"name":"t","recipients":[{"email":"a@corp.example","name":"', [0xe2, 0x82], [0xac], '"}]}'));
    expect(ok.records[0]!.name).toBe("€");
  });

  it("refuses a value longer than 64 KB before buffering the rest of it", async () => {
    let chunksRead = 0;
    const upload = readJsonAudience((async function* () {
      yield '{"name":"t","recipients":[{"email":"a@corp.example","name":"';
      for (let i = 0; i < 1000; i++) {
        chunksRead += 1;
        yield "x".repeat(16 * 1024);
      }
    })());
    const err = await (async () => {
      for await (const _ of upload.records) void _;
    })().then(() => null, (e: unknown) => e);
    expect((err as AudienceError).message).toContain("longer than 65536 bytes");
    expect(chunksRead).toBeLessThan(10);
  });
});
