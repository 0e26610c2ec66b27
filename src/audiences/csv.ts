/**
 * Streaming CSV reader for audience uploads. Yields one record per data row and never holds
 * more than one row (plus csv-parse's buffer) in memory, so a million-row file is fine.
 *
 * Accepted shapes:
 * - a header row (names case-insensitive, any order): `email` required, `name` and
 *   `department` optional, other columns ignored;
 * - no header: the first cell of the first row contains `@`, and the first column is the
 *   email. Other columns are ignored, since without a header we cannot know what they hold.
 *
 * An empty line (blank or whitespace only) holds no recipient, but it is a row received: it is
 * yielded as null, which the store counts toward its bound on rows and otherwise skips, so a body
 * of endless empty lines ends like one of endless duplicates.
 */
import type { Readable } from "node:stream";
import { pipeline } from "node:stream";
import { CsvError, parse } from "csv-parse";
import { AudienceError } from "./errors.js";

export interface AudienceRecord {
  email: string;
  name?: string;
  department?: string;
}

/** Bounds csv-parse's buffer: an unterminated quote must not swallow the whole upload. */
const MAX_RECORD_BYTES = 64 * 1024;

interface Columns {
  email: number;
  name: number; // -1: absent
  department: number;
}

export async function* parseCsv(stream: NodeJS.ReadableStream | Readable): AsyncIterable<AudienceRecord | null> {
  // Arrays rather than `columns: true`: the header is optional, so we decide from the first row.
  const parser = parse({
    bom: true,
    trim: true,
    // Not skipped by csv-parse, which would read endless empty lines without yielding: see isEmptyLine.
    skip_empty_lines: false,
    raw: true,
    relax_column_count: true, // spreadsheet exports often drop trailing empty cells
    max_record_size: MAX_RECORD_BYTES,
  });
  // pipeline (not pipe) so a source error reaches the parser, and an early stop by the
  // consumer (invalid row) destroys the source instead of leaving it paused forever.
  pipeline(stream, parser, () => {});

  let columns: Columns | null = null;
  try {
    for await (const { record: row, raw } of parser as AsyncIterable<{ record: string[]; raw: string }>) {
      if (isEmptyLine(row, raw)) {
        yield null;
        continue;
      }
      if (columns === null) {
        const headerless = (row[0] ?? "").includes("@");
        columns = headerless ? { email: 0, name: -1, department: -1 } : columnsFrom(row);
        if (!headerless) continue;
      }
      yield recordFrom(row, columns);
    }
  } catch (err) {
    if (err instanceof CsvError) {
      const line = typeof err.lines === "number" ? err.lines : undefined;
      throw new AudienceError("invalid_csv", `Malformed CSV${line ? ` at line ${line}` : ""}: ${err.message}`, { line, csvCode: err.code });
    }
    throw err;
  }
}

/** What `skip_empty_lines` skips: a line empty once trimmed (a quoted "" is a row with an empty email, refused as such). */
function isEmptyLine(row: string[], raw: string): boolean {
  return row.length === 1 && row[0] === "" && !raw.includes('"');
}

function columnsFrom(first: string[]): Columns {
  const header = first.map((h) => h.trim().toLowerCase());
  const email = header.indexOf("email");
  if (email < 0) {
    const seen = header.slice(0, 10).join(", ") || "(empty)";
    throw new AudienceError(
      "invalid_csv",
      `CSV has no "email" column (header: ${seen}). Add a header row with an "email" column, or put the email in the first column without a header.`,
      { line: 1 },
    );
  }
  return { email, name: header.indexOf("name"), department: header.indexOf("department") };
}

function recordFrom(row: string[], c: Columns): AudienceRecord {
  const rec: AudienceRecord = { email: row[c.email] ?? "" };
  const name = c.name >= 0 ? row[c.name] : undefined;
  const department = c.department >= 0 ? row[c.department] : undefined;
  if (name) rec.name = name;
  if (department) rec.department = department;
  return rec;
}
