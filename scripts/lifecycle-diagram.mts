/** Rewrites the lifecycle diagram in docs/architecture.md from the table (npm run docs:lifecycle). */
import { readFileSync, writeFileSync } from "node:fs";
import { DIAGRAM_BEGIN, DIAGRAM_END, lifecycleSection } from "../src/domain/lifecycle-diagram.js";

const path = new URL("../docs/architecture.md", import.meta.url);
const doc = readFileSync(path, "utf8");
const start = doc.indexOf(DIAGRAM_BEGIN);
const end = doc.indexOf(DIAGRAM_END);
if (start < 0 || end < start) throw new Error("docs/architecture.md has no lifecycle diagram markers");
writeFileSync(path, doc.slice(0, start) + lifecycleSection() + doc.slice(end + DIAGRAM_END.length));
process.stdout.write("docs/architecture.md: lifecycle diagram rewritten\n");
