/**
 * The plan of a staged send's waves, made once it is released (store/lua/move.lua names the
 * follow-up): the seed cohort (the author, the approvers and the seed audience's members, those of
 * them among the recipients), the canary (waves/canary.ts: a stratified sample by domain, from a
 * seed derived from the message and its release, recorded, so that the plan is the same however
 * often it is made), the rest. The early recipients' wave bytes are written, then waves.lua `begin`
 * opens the first wave. Nothing is claimed before (the claim answers `held`).
 *
 * Reads the frozen audience twice in slices (the canary's two passes); holds one bit per recipient
 * and the chosen indexes, never the audience.
 */
import { createHash } from "node:crypto";
import type { Logger } from "pino";
import { domainOf } from "../src/domain/recipient-domains.js";
import type { FollowUps } from "../src/service/follow-ups.js";

import type { MessageStore } from "../src/store/message-store.js";
import { chooseCanary, type RecipientFacts } from "../src/waves/canary.js";
import { partitionWaves } from "../src/waves/partition.js";
import { MAX_SEED_AUDIENCE, type WaveSettings } from "../src/waves/settings.js";
import { keys } from "../src/store/keys.js";
import type { Redis } from "ioredis";

/** Recipients read per ZRANGE while the canary is chosen. */
const SLICE = 5000;

export interface WavePlannerDeps {
  store: MessageStore;
  redis: Redis;
  followUps: FollowUps;
  settings: WaveSettings;
  logger: Logger;
}

export class WavePlanner {
  constructor(private readonly d: WavePlannerDeps) {}

  async plan(id: string): Promise<void> {
    const m = await this.d.store.get(id);
    // Recalled before the plan was made, or planned already (a repeated job): nothing to do.
    if (!m || m.state !== "sending" || m.waves?.phase !== "planning" || !m.releaseAt) return;
    const n = m.recipientCount;
    const seedAudience = m.waves.seedAudience;
    const seedIndexes = await this.seedCohort(id, [m.author, ...m.approvals.map((a) => a.by)], seedAudience);
    const canarySeed = createHash("sha256").update(`airlock-canary\n${id}\n${m.revision}\n${Date.parse(m.releaseAt)}`).digest("hex").slice(0, 32);
    const canary = await chooseCanary({
      n,
      seed: canarySeed,
      facts: () => this.facts(id, n),
      percent: this.d.settings.canaryPercent,
      minimum: this.d.settings.canaryMinimum,
      exclude: seedIndexes,
    });
    const plan = partitionWaves(n, seedIndexes, canary);
    await this.d.store.writeWavePlan(id, plan.seed, plan.canary);
    const a = await this.d.store.wavesBegin(id, {
      seed: plan.seed.length,
      canary: plan.canary.length,
      canarySeed,
      waitMs: this.d.settings.waitMs,
      thresholds: this.d.settings.thresholds,
    });
    if (!a.ok) {
      // A second run dropped this run's plan meanwhile: the job fails and is tried again (plans anew).
      if (a.err === "plan_missing") throw new Error(`message ${id}: the plan of waves went missing before it began; planning again`);
      this.d.logger.info({ message: id }, `message ${id}: waves not begun (${a.err})`);
      return;
    }
    this.d.logger.info({ message: id }, `message ${id}: waves planned: seed ${plan.seed.length}, canary ${plan.canary.length}, rest ${plan.restCount}`);
    await this.d.followUps.carryOut(id, a.followUps);
  }

  /** The indexes among the recipients of the people who go first, and of the seed audience's members. */
  private async seedCohort(id: string, people: string[], seedAudience: string | null): Promise<number[]> {
    // Read at release (the audience may have been replaced since the submit checked its size): no
    // more of it than the submit allows, so that it never becomes a wave of its own.
    const members = seedAudience ? await this.d.redis.zrange(keys.audience(seedAudience), "0", String(MAX_SEED_AUDIENCE - 1)) : [];
    return this.d.store.indexesOf(id, [...people.map((p) => p.toLowerCase()), ...members]);
  }

  /** Each recipient's index and domain, in slices of the frozen set (the canary reads them twice). */
  private async *facts(id: string, n: number): AsyncGenerator<RecipientFacts> {
    for (let from = 0; from < n; from += SLICE) {
      const slice = await this.d.store.recipientSlice(id, from, Math.min(SLICE, n - from));
      for (let j = 0; j < slice.length; j++) yield { index: from + j, domain: domainOf(slice[j]!) };
    }
  }
}
