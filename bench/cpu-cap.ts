/**
 * `--service-cpus F`: caps each service process at F CPUs with a CFS quota in a cgroup of its own,
 * as `docker --cpus F` does. On a 2-core machine that also hosts Redis and the SMTP sink, "does a
 * second worker process add throughput?" can only be asked of processes that cannot take the
 * whole machine each: a capped process is a worker on a small machine of its own.
 * cgroup v1 (`/sys/fs/cgroup/cpu`) or v2 with the cpu controller; needs root.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const PERIOD_US = 100_000;

function cgroupRoot(): { dir: string; write(group: string, cores: number): void } {
  const v1 = "/sys/fs/cgroup/cpu";
  if (existsSync(join(v1, "cpu.cfs_quota_us"))) {
    return {
      dir: v1,
      write(group, cores) {
        writeFileSync(join(group, "cpu.cfs_period_us"), String(PERIOD_US));
        writeFileSync(join(group, "cpu.cfs_quota_us"), String(Math.round(cores * PERIOD_US)));
      },
    };
  }
  const v2 = "/sys/fs/cgroup";
  if (existsSync(join(v2, "cgroup.controllers")) && readFileSync(join(v2, "cgroup.subtree_control"), "utf8").split(/\s+/).includes("cpu")) {
    return { dir: v2, write: (group, cores) => writeFileSync(join(group, "cpu.max"), `${Math.round(cores * PERIOD_US)} ${PERIOD_US}`) };
  }
  throw new Error("--service-cpus needs a writable cgroup cpu controller (cgroup v1 /sys/fs/cgroup/cpu, or v2 with cpu enabled) and root");
}

/** Moves `pid` (all its threads) into a new cgroup capped at `cores`; the returned function removes the group once the process is gone. */
export function capCpu(pid: number, cores: number): () => void {
  const root = cgroupRoot();
  const group = join(root.dir, "airlock-bench", String(pid));
  mkdirSync(group, { recursive: true });
  root.write(group, cores);
  writeFileSync(join(group, "cgroup.procs"), String(pid));
  return () => {
    try {
      rmdirSync(group);
    } catch {
      // still has a process in it (it did not stop): left for the kernel to keep; harmless
    }
  };
}
