/**
 * Streaming reader for an audience uploaded as JSON, `{"name": "...", "recipients": [{"email",
 * "name"?, "department"?}, ...]}`, in either key order. It yields one record at a time and never
 * holds more than one chunk of the body, so a million recipients as JSON cost what they cost as CSV
 * (a body parser would hold the whole body and every object: ~535 MB for 900,000 recipients).
 *
 * The document's shape is fixed, so a small state machine over @streamparser/json's tokens checks
 * it as the tokens arrive: an unknown or repeated key, a value of the wrong type or anything after
 * the closing brace is refused at once, naming its path, before any value is built from it (so a
 * `__proto__` key never becomes an object's prototype either).
 */
import { Tokenizer, TokenType, type ParsedTokenInfo } from "@streamparser/json";
import { assertAudienceName } from "./audience-store.js";
import type { AudienceRecord } from "./csv.js";
import { AudienceError } from "./errors.js";

export interface JsonAudienceUpload {
  /** The recipients, in body order. */
  records: AsyncIterable<AudienceRecord>;
  /** The body's `name`; known once `records` has been read to its end (a body may give it last). */
  name(): string;
  /**
   * A directory audience's body, `{name, directoryGroup, confirm?}` (no recipients): its group DN and
   * whether an admin confirms the resolution; null for a list of recipients. Known once `records`
   * has been read to its end (it then yielded nothing).
   */
  directory(): { group: string; confirm: boolean } | null;
}

/** Longest directoryGroup read (parseDn refuses longer ones, naming the limit). */
const MAX_DN_LENGTH = 4096;

/** Same bound as a CSV row: a value (or a run of whitespace) this long is refused, not buffered. */
const MAX_PENDING_BYTES = 64 * 1024;
const ROOT_KEYS: ReadonlySet<string> = new Set(["name", "recipients", "directoryGroup", "confirm"]);
const RECIPIENT_FIELDS: ReadonlySet<string> = new Set(["email", "name", "department"]);
/** Longest email kept (RFC 5321's path limit, as the API's address checks use). */
const MAX_EMAIL_LENGTH = 320;

export function readJsonAudience(body: AsyncIterable<Uint8Array | string>): JsonAudienceUpload {
  const machine = new UploadShape();
  async function* records(): AsyncIterable<AudienceRecord> {
    const tokenizer = new Tokenizer();
    // Invalid UTF-8 is refused rather than read as U+FFFD (the rest of the API does the same).
    // ignoreBOM: the BOM is passed on, and the tokenizer skips one at the start (a second is an error).
    const decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
    let written = 0;
    let lastTokenAt = 0;
    tokenizer.onToken = (t) => {
      lastTokenAt = t.offset;
      machine.take(t);
    };
    const write = (text: string) => {
      try {
        tokenizer.write(text);
      } catch (err) {
        throw err instanceof AudienceError ? err : invalidJson(`the body is not valid JSON: ${(err as Error).message}`);
      }
    };
    for await (const chunk of body) {
      let text: string;
      try {
        text = typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
      } catch {
        throw invalidJson("the request body is not valid UTF-8");
      }
      written += typeof chunk === "string" ? Buffer.byteLength(chunk) : chunk.byteLength;
      write(text);
      if (written - lastTokenAt > MAX_PENDING_BYTES) throw invalidJson(`a value is longer than ${MAX_PENDING_BYTES} bytes`);
      yield* machine.drain();
    }
    try {
      write(decoder.decode());
    } catch (err) {
      throw err instanceof AudienceError ? err : invalidJson("the request body is not valid UTF-8");
    }
    if (!tokenizer.isEnded) {
      try {
        tokenizer.end();
      } catch (err) {
        throw err instanceof AudienceError ? err : invalidJson("the body ends in the middle of a value");
      }
    }
    machine.finish();
    yield* machine.drain();
  }
  return { records: records(), name: () => machine.audienceName(), directory: () => machine.directory() };
}

type State =
  | "start" // before the root `{`
  | "root-key-or-end" // after `{`
  | "root-key" // after a `,` in the root
  | "root-colon"
  | "root-value"
  | "root-next" // after a root value: `,` or `}`
  | "list-item-or-end" // after `[`
  | "list-item" // after a `,` in the list
  | "list-next"
  | "item-key-or-end"
  | "item-key"
  | "item-colon"
  | "item-value"
  | "item-next"
  | "end";

/** The upload's grammar as a state machine over tokens; completed records wait in `ready`. */
class UploadShape {
  private state: State = "start";
  private key = "";
  private readonly rootKeys = new Set<string>();
  private name: string | undefined;
  private group: string | undefined;
  private confirm = false;
  private index = -1;
  private item: Record<string, string> = {};
  /** The current recipient's keys so far, null values included (they are not kept in `item`). */
  private itemKeys = new Set<string>();
  private ready: AudienceRecord[] = [];

  take({ token, value }: ParsedTokenInfo): void {
    switch (this.state) {
      case "start":
        if (token !== TokenType.LEFT_BRACE) throw invalidJson('the body must be a JSON object {"name", "recipients"}');
        this.state = "root-key-or-end";
        return;
      case "root-key-or-end":
      case "root-key":
        if (token === TokenType.RIGHT_BRACE && this.state === "root-key-or-end") return void (this.state = "end");
        if (token !== TokenType.STRING) throw unexpected([], token);
        if (!ROOT_KEYS.has(value as string)) {
          throw invalidJson(`unknown key ${JSON.stringify(String(value).slice(0, 40))}: the body has "name" and "recipients" (or "directoryGroup" and "confirm")`, [String(value).slice(0, 40)]);
        }
        const rootKey = value as string;
        if (this.rootKeys.has(rootKey)) throw invalidJson(`"${rootKey}" is given twice`, [rootKey]);
        if ((rootKey === "recipients" && this.rootKeys.has("directoryGroup")) || (rootKey === "directoryGroup" && this.rootKeys.has("recipients"))) {
          throw invalidJson("give either recipients or directoryGroup, not both", [rootKey]);
        }
        this.rootKeys.add(rootKey);
        this.key = rootKey;
        this.state = "root-colon";
        return;
      case "root-colon":
        if (token !== TokenType.COLON) throw unexpected([this.key], token); // the tokenizer does not check grammar
        this.state = "root-value";
        return;
      case "root-value":
        if (this.key === "name") {
          if (token !== TokenType.STRING) throw invalidJson("name must be a string", ["name"]);
          assertAudienceName(value as string); // now, not after a million recipients were read
          this.name = value as string;
          this.state = "root-next";
        } else if (this.key === "directoryGroup") {
          if (token !== TokenType.STRING) throw invalidJson("directoryGroup must be a string (a group's DN)", ["directoryGroup"]);
          if ((value as string).length > MAX_DN_LENGTH) throw invalidJson(`directoryGroup is longer than ${MAX_DN_LENGTH} characters`, ["directoryGroup"]);
          this.group = value as string;
          this.state = "root-next";
        } else if (this.key === "confirm") {
          if (token !== TokenType.TRUE && token !== TokenType.FALSE) throw invalidJson("confirm must be true or false", ["confirm"]);
          this.confirm = token === TokenType.TRUE;
          this.state = "root-next";
        } else {
          if (token !== TokenType.LEFT_BRACKET) throw invalidJson("recipients must be an array of {email, name?, department?}", ["recipients"]);
          this.state = "list-item-or-end";
        }
        return;
      case "root-next":
        if (token === TokenType.COMMA) return void (this.state = "root-key");
        if (token === TokenType.RIGHT_BRACE) return void (this.state = "end");
        throw unexpected([], token);
      case "list-item-or-end":
      case "list-item":
        if (token === TokenType.RIGHT_BRACKET && this.state === "list-item-or-end") return void (this.state = "root-next");
        this.index += 1;
        if (token !== TokenType.LEFT_BRACE) throw invalidJson("a recipient must be an object {email, name?, department?}", ["recipients", this.index]);
        this.item = {};
        this.itemKeys = new Set();
        this.state = "item-key-or-end";
        return;
      case "list-next":
        if (token === TokenType.COMMA) return void (this.state = "list-item");
        if (token === TokenType.RIGHT_BRACKET) return void (this.state = "root-next");
        throw unexpected(["recipients"], token);
      case "item-key-or-end":
      case "item-key":
        if (token === TokenType.RIGHT_BRACE && this.state === "item-key-or-end") return this.endItem();
        if (token !== TokenType.STRING) throw unexpected(["recipients", this.index], token);
        if (!RECIPIENT_FIELDS.has(value as string)) {
          throw invalidJson(`unknown key ${JSON.stringify(String(value).slice(0, 40))}: a recipient has email, name and department`, ["recipients", this.index, String(value).slice(0, 40)]);
        }
        if (this.itemKeys.has(value as string)) throw invalidJson(`"${value}" is given twice`, ["recipients", this.index, value as string]);
        this.itemKeys.add(value as string);
        this.key = value as string;
        this.state = "item-colon";
        return;
      case "item-colon":
        if (token !== TokenType.COLON) throw unexpected(["recipients", this.index, this.key], token);
        this.state = "item-value";
        return;
      case "item-value": {
        const path = ["recipients", this.index, this.key];
        // null for name/department means "none", as an empty CSV cell does.
        if (token === TokenType.NULL && this.key !== "email") return void (this.state = "item-next");
        if (token !== TokenType.STRING) throw invalidJson(`${path.join(".")} must be a string`, path);
        const limit = this.key === "email" ? MAX_EMAIL_LENGTH : Infinity; // name/department: the store refuses over 200
        if ((value as string).length > limit) throw invalidJson(`${path.join(".")} is longer than ${limit} characters`, path);
        this.item[this.key] = value as string;
        this.state = "item-next";
        return;
      }
      case "item-next":
        if (token === TokenType.COMMA) return void (this.state = "item-key");
        if (token === TokenType.RIGHT_BRACE) return this.endItem();
        throw unexpected(["recipients", this.index], token);
      case "end":
        throw invalidJson("unexpected data after the end of the JSON object");
    }
  }

  private endItem(): void {
    if (this.item.email === undefined) throw invalidJson(`recipients.${this.index}.email is missing`, ["recipients", this.index, "email"]);
    this.ready.push(this.item as unknown as AudienceRecord);
    this.state = "list-next";
  }

  /** Records completed so far, handed over once. */
  *drain(): Iterable<AudienceRecord> {
    const out = this.ready;
    this.ready = [];
    yield* out;
  }

  finish(): void {
    if (this.state !== "end") throw invalidJson("the body ends before its JSON object does");
    if (this.name === undefined) throw invalidJson("name is missing", ["name"]);
    if (!this.rootKeys.has("recipients") && this.group === undefined) throw invalidJson("recipients is missing (or directoryGroup, for a directory audience)", ["recipients"]);
    if (this.rootKeys.has("confirm") && this.group === undefined) throw invalidJson("confirm is for a directory audience (with directoryGroup)", ["confirm"]);
  }

  directory(): { group: string; confirm: boolean } | null {
    return this.group === undefined ? null : { group: this.group, confirm: this.confirm };
  }

  audienceName(): string {
    if (this.name === undefined) throw new Error("readJsonAudience: name() before the records were read to their end");
    return this.name;
  }
}

function unexpected(path: Array<string | number>, token: TokenType): AudienceError {
  const where = path.length ? ` in ${path.join(".")}` : "";
  return invalidJson(`unexpected ${TokenType[token]?.toLowerCase().replace("_", " ") ?? "token"}${where}`, path.length ? path : undefined);
}

function invalidJson(message: string, path?: Array<string | number>): AudienceError {
  return new AudienceError("invalid_json", message, path ? { path } : undefined);
}
