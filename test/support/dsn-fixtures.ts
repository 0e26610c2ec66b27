/** The DSN fixtures of test/fixtures/dsn/ with their return path filled in, as CRLF bytes (what SMTP carries). */
import { readFileSync } from "node:fs";

export const DSN_FIXTURES = ["office365.eml", "postfix-failed.eml", "postfix-delayed.eml", "gmail.eml"] as const;

export function dsnFixture(name: (typeof DSN_FIXTURES)[number], returnPath = "bounce+42.z.abcdefghijklm@bounces.corp.example"): Buffer {
  const text = readFileSync(new URL(`../fixtures/dsn/${name}`, import.meta.url), "utf8").replaceAll("@@RETURN_PATH@@", returnPath);
  return Buffer.from(text.replace(/\r?\n/g, "\r\n"));
}
