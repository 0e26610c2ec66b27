/**
 * The directory phase of `npm run bench`: a real slapd (test/support/slapd.ts) loaded with one group
 * of `n` people (every 1000th without mail, every 500th disabled), and a service process of its own
 * configured with it. Defining the audience resolves it once (the baseline); the timed step is the
 * submit of a message naming it: the resolution again (paged searches, streamed into Redis), its
 * commit as a new version and the freeze. The process's peak RSS is that of both.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ENABLED_FILTER, SERVICE_DN, SERVICE_PASSWORD, SUFFIX, startSlapd, writeTestDirectory } from "../test/support/slapd.js";
import { MAIL, type Api } from "./phases.js";

export interface DirectoryResult {
  members: number;
  recipients: number;
  /** slapadd of the LDIF (not Airlock's time). */
  loadMs: number;
  /** POST /api/audiences {name, directoryGroup}: the first resolution and its commit. */
  defineMs: number;
  /** POST /api/messages naming it: the resolution, its commit as a version, and the freeze. */
  submitMs: number;
  /** The service process's peak RSS after the define alone (resolution and commit, no mail built yet), in bytes. */
  peakRssAfterDefine: number;
}

/** Runs the phase; `start` launches the service with the directory settings it is given. */
export async function runDirectoryPhase(o: {
  dir: string;
  n: number;
  start: (env: Record<string, string>) => Promise<{ api: Api; stop(): Promise<void>; peakRss(): number[] }>;
}): Promise<{ result: DirectoryResult; peakRss: number }> {
  mkdirSync(o.dir, { recursive: true });
  const ldif = join(o.dir, "directory.ldif");
  const fixture = await writeTestDirectory(ldif, { largeGroupSize: o.n });
  const large = fixture.groups.large!;
  const slapd = await startSlapd({ ldifFile: ldif });
  try {
    const svc = await o.start({
      DIRECTORY_URL: slapd.url,
      DIRECTORY_BIND_DN: SERVICE_DN,
      DIRECTORY_BIND_PASSWORD: SERVICE_PASSWORD,
      DIRECTORY_BASE_DN: SUFFIX,
      DIRECTORY_ENABLED_FILTER: ENABLED_FILTER,
    });
    try {
      let t0 = performance.now();
      const defined = await svc.api.call("author", "POST", "/api/audiences", { name: "bench-directory", directoryGroup: large.dn });
      const defineMs = performance.now() - t0;
      const peakRssAfterDefine = svc.peakRss()[0]!;
      if (defined.status !== 201 || defined.body.size !== large.recipients) throw new Error(`directory audience: HTTP ${defined.status} ${JSON.stringify(defined.body).slice(0, 300)}`);
      t0 = performance.now();
      const m = await svc.api.call("author", "POST", "/api/messages", { subject: MAIL.subject, text: MAIL.text, audience: { lists: ["bench-directory"] } });
      const submitMs = performance.now() - t0;
      if (m.status !== 201 || m.body.recipientCount !== large.recipients) throw new Error(`submit to the directory audience: HTTP ${m.status} ${JSON.stringify(m.body).slice(0, 300)}`);
      return { result: { members: large.size, recipients: large.recipients, loadMs: slapd.loadMs, defineMs: Math.round(defineMs), submitMs: Math.round(submitMs), peakRssAfterDefine }, peakRss: svc.peakRss()[0]! };
    } finally {
      await svc.stop();
    }
  } finally {
    await slapd.cleanup();
  }
}
