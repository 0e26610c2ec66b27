#!/usr/bin/env node
/**
 * `npm run build`: compiles src/ and workers/ to plain JavaScript (tsconfig.build.json) and copies
 * the non-TypeScript files the code reads next to itself at run time, so that production runs
 * `node dist/src/main.js` with no TypeScript tooling. templates/ is not copied: it is found at
 * `<dist>/../templates` (src/mail/render.ts), as in the repository and the Docker image.
 *
 *   node scripts/build.mjs [--out-dir <dir>]     (default: dist)
 *
 * The output is built from empty in a sibling folder and then swapped in, so two starts building
 * at once (`npm run start:api` next to `npm run start:worker`) never run a half-deleted dist/.
 *
 * A type error does not stop the build (tsc still emits, and tsx never type-checked either): it is
 * printed, and `npm run typecheck`, `npm test` and the Dockerfile's type-check refuse it.
 */
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, renameSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("../", import.meta.url));

/** Folders of run-time assets, copied as they are to the same place under the output. */
const ASSETS = ["src/store/lua"];

const args = process.argv.slice(2);
const at = args.indexOf("--out-dir");
if (args.length > 0 && (at !== 0 || args.length !== 2)) {
  process.stderr.write("usage: node scripts/build.mjs [--out-dir <dir>]\n");
  process.exit(64);
}
const outDir = resolve(at === 0 ? args[1] : join(root, "dist"));
if (`${root}`.startsWith(`${outDir}${sep}`) || resolve(root) === outDir || [...ASSETS, "src", "workers", "templates"].some((d) => resolve(root, d) === outDir)) {
  process.stderr.write(`build: refusing to replace ${outDir}\n`);
  process.exit(64);
}

const t0 = Date.now();
const tmp = `${outDir}.build-${process.pid}`;
rmSync(tmp, { recursive: true, force: true });

const tsc = join(dirname(createRequire(import.meta.url).resolve("typescript/package.json")), "bin", "tsc");
const fail = (why) => {
  rmSync(tmp, { recursive: true, force: true });
  process.stderr.write(`build: ${why}\n`);
  process.exit(1);
};
const run = spawnSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json"), "--outDir", tmp], { cwd: root, stdio: "inherit" });
// tsc exits 0 when clean, 2 when it found errors but emitted anyway (noEmitOnError is off), 1 when
// it emitted nothing (e.g. a bad tsconfig).
if (run.error) fail(`cannot run tsc: ${run.error.message}`);
if (run.status === 2) process.stderr.write("build: type errors above; JavaScript emitted anyway (`npm run typecheck` refuses them)\n");
else if (run.status !== 0) fail(`tsc failed (${run.status ?? run.signal})`);
if (!existsSync(join(tmp, "src", "main.js"))) fail("src/main.js was not emitted");

for (const dir of ASSETS) cpSync(join(root, dir), join(tmp, dir), { recursive: true });

// Swap in: the old output out of the way, the new one in its place. A concurrent build may swap
// in between (ENOTEMPTY/EEXIST): try again; its output is of the same sources anyway.
const old = `${outDir}.old-${process.pid}`;
for (let attempt = 0; ; attempt++) {
  rmSync(old, { recursive: true, force: true });
  try {
    renameSync(outDir, old);
  } catch (e) {
    if (e.code !== "ENOENT") fail(`cannot move ${outDir} aside: ${e.message}`);
  }
  try {
    renameSync(tmp, outDir);
    break;
  } catch (e) {
    if ((e.code !== "ENOTEMPTY" && e.code !== "EEXIST") || attempt >= 20) fail(`cannot move the build to ${outDir}: ${e.message}`);
  }
}
rmSync(old, { recursive: true, force: true });

process.stdout.write(`build: ${outDir} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
