/** store/bulk-pace.ts: bulk work waits its share while a send runs, and only then. */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { BulkPace } from "../../src/store/bulk-pace.js";

/** A pace on a hand-moved clock, recording the waits it asks for and how often it asked about sends. */
function paced(ratio: number, sending: () => boolean | Promise<boolean>) {
  let now = 0;
  const waits: number[] = [];
  let asked = 0;
  const pace = new BulkPace({
    ratio,
    now: () => now,
    sleep: async (ms) => {
      waits.push(ms);
      now += ms;
    },
    sendsRunning: async () => {
      asked++;
      return sending();
    },
  });
  /** One slice of `ms`, then the pace. */
  const slice = async (ms: number) => {
    const s = pace.start();
    now += ms;
    await pace.after(s);
  };
  return { pace, waits, slice, asked: () => asked, advance: (ms: number) => (now += ms) };
}

describe("the bulk pace", () => {
  it("waits ratio times each slice while a send runs: bulk work takes a quarter of the time at 3", async () => {
    const p = paced(3, () => true);
    for (let i = 0; i < 4; i++) await p.slice(4);
    expect(p.waits).toEqual([12, 12, 12, 12]);
  });

  it("does not wait when no send runs, nor at ratio 0, nor when the check fails", async () => {
    const idle = paced(3, () => false);
    await idle.slice(10);
    const off = paced(0, () => true);
    await off.slice(10);
    expect(off.asked()).toBe(0);
    const broken = paced(3, () => Promise.reject(new Error("redis down")));
    await broken.slice(10);
    expect([idle.waits, off.waits, broken.waits]).toEqual([[], [], []]);
  });

  it("paces by the work the caller measured (an upload leaves out its wait for the client's bytes)", async () => {
    const p = paced(3, () => true);
    await p.pace.afterWork(5);
    expect(p.waits).toEqual([15]);
  });

  it("caps one wait at 250 ms, so a stalled slice does not stall the upload after it", async () => {
    const p = paced(3, () => true);
    await p.slice(1000);
    expect(p.waits).toEqual([250]);
  });

  it("asks whether sends run at most every 250 ms, and sees a send start and end", async () => {
    let sending = false;
    const p = paced(1, () => sending);
    await p.slice(2); // asked: no
    sending = true;
    await p.slice(2); // within 250 ms: still the old answer
    expect([p.asked(), p.waits]).toEqual([1, []]);
    p.advance(250);
    await p.slice(2); // asked again: yes
    expect([p.asked(), p.waits]).toEqual([2, [2]]);
    sending = false;
    p.advance(250);
    await p.slice(2);
    expect([p.asked(), p.waits]).toEqual([3, [2]]);
  });

  it("goes on with the last answer when a check is not answered within 100 ms, and asks once at a time", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
    try {
      let calls = 0;
      let answer: (r: boolean) => void = () => {};
      let now = 0;
      const waits: number[] = [];
      const pace = new BulkPace({
        ratio: 3,
        now: () => now,
        sleep: async (ms) => void waits.push(ms),
        sendsRunning: () => {
          calls++;
          if (calls === 2) return new Promise<boolean>((r) => (answer = r));
          return Promise.resolve(calls === 1);
        },
      });
      await pace.afterWork(10); // answered at once: a send runs
      now += 250;
      const second = pace.afterWork(10); // never answered (Redis away)
      await vi.advanceTimersByTimeAsync(100);
      await second; // went on with the last answer: still a send
      now += 250;
      const third = pace.afterWork(10); // the unanswered check is still out: no second one
      await vi.advanceTimersByTimeAsync(100);
      await third;
      expect([calls, waits]).toEqual([2, [30, 30, 30]]);
      answer(true); // the late answer frees the way for the next check
      await vi.advanceTimersByTimeAsync(0);
      await pace.afterWork(10); // asked again (a third check): no send any more
      expect([calls, waits]).toEqual([3, [30, 30, 30]]);
      expect(vi.getTimerCount()).toBe(0);
    } finally {
      vi.useRealTimers();
    }
  });

  it("refuses a negative ratio", () => {
    expect(() => new BulkPace({ ratio: -1, sendsRunning: async () => false })).toThrow(RangeError);
  });
});

describe("a stream's budget", () => {
  it("waits as the pace does until its waits add up to the budget, then never", async () => {
    const p = paced(3, () => true);
    const stream = p.pace.budget(250);
    const slice = async (ms: number) => {
      const s = stream.start();
      p.advance(ms);
      return stream.after(s);
    };
    expect(await slice(40)).toBe(120);
    expect(await slice(40)).toBe(120); // 240 waited: still within
    expect(await slice(40)).toBe(120); // the last one may end past the budget
    expect(await slice(40)).toBe(0); // 360 waited: no more
    expect(await stream.afterWork(40)).toBe(0);
    expect(p.waits).toEqual([120, 120, 120]);
    // Another stream has a budget of its own.
    expect(await p.pace.budget(250).afterWork(10)).toBe(30);
  });
});

describe("giving way to stops (a recall, an ops pause)", () => {
  // The limit on a wait for stops is a global setTimeout: faked in every test of this block.
  beforeEach(() => void vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] }));
  afterEach(() => void vi.useRealTimers());

  /** A stop held open until `end()`: what MessageService.recall runs inside duringStop. */
  function heldStop(pace: BulkPace) {
    let end!: () => void;
    const done = pace.duringStop(() => new Promise<string>((r) => (end = () => r("answered"))));
    return { end: () => end(), done };
  }

  it("holds bulk work before its next slice until the stops are answered, send or no send", async () => {
    const p = paced(3, () => false);
    const first = heldStop(p.pace);
    const second = heldStop(p.pace);
    let sliceDone = false;
    const slice = p.slice(5).then(() => (sliceDone = true));
    await vi.advanceTimersByTimeAsync(200);
    expect(sliceDone).toBe(false);
    first.end();
    expect(await first.done).toBe("answered");
    await vi.advanceTimersByTimeAsync(0);
    expect(sliceDone).toBe(false); // the other stop still runs
    second.end();
    await second.done;
    await vi.advanceTimersByTimeAsync(0);
    expect(sliceDone).toBe(true);
    await slice;
    expect(p.waits).toEqual([]); // no send: no share to wait besides the stops
    expect(vi.getTimerCount()).toBe(0);
    // With no stop running, a slice goes on at once.
    await p.slice(5);
    expect(p.waits).toEqual([]);
  });

  it("waits at most 250 ms a slice for a stop that is not answered, and counts the wait", async () => {
    let now = 0;
    const counted: number[] = [];
    const pace = new BulkPace({ ratio: 3, now: () => now, sendsRunning: async () => false, onWait: (ms) => counted.push(ms) });
    const stop = heldStop(pace);
    let waited: number | null = null;
    const slice = pace.afterWork(5).then((ms) => (waited = ms));
    now += 249;
    await vi.advanceTimersByTimeAsync(249);
    expect(waited).toBe(null);
    now += 1;
    await vi.advanceTimersByTimeAsync(1);
    await slice;
    expect([waited, counted]).toEqual([250, [250]]);
    stop.end();
    await stop.done;
  });

  it("waits for stops at most 250 ms a slice in all, before and after its share of a send's time", async () => {
    let now = 0;
    const counted: number[] = [];
    const pace = new BulkPace({
      ratio: 3,
      now: () => now,
      sleep: async (ms) => void (now += ms),
      sendsRunning: async () => true,
      onWait: (ms) => counted.push(ms),
    });
    const stop = heldStop(pace); // never answered while the slice waits
    let waited: number | null = null;
    const slice = pace.afterWork(5).then((ms) => (waited = ms));
    now += 250;
    await vi.advanceTimersByTimeAsync(250);
    await slice;
    expect([waited, counted]).toEqual([250 + 15, [250, 15]]); // nothing more for the stop after the share
    expect(vi.getTimerCount()).toBe(0);
    stop.end();
    await stop.done;
  });

  it("stops that follow one another hold a slice 250 ms in all, not 250 ms each", async () => {
    let now = 0;
    const pace = new BulkPace({ ratio: 3, now: () => now, sendsRunning: async () => false });
    let current = heldStop(pace);
    let waited: number | null = null;
    const slice = pace.afterWork(5).then((ms) => (waited = ms));
    for (let k = 0; k < 4; k++) {
      // Every 100 ms the stop is answered and a new one begins at once.
      now += 100;
      await vi.advanceTimersByTimeAsync(100);
      const next = current.done.then(() => heldStop(pace));
      current.end();
      current = await next;
      await vi.advanceTimersByTimeAsync(0);
      if (now < 250) expect(waited).toBe(null);
    }
    await slice;
    expect(waited).toBe(300); // let go at 250 ms (the hand clock moves in steps of 100), not after 400
    current.end();
    await current.done;
    expect(vi.getTimerCount()).toBe(0);
  });

  it("a stop's failure is its caller's, and ends the wait as an answer does; at ratio 0 nothing waits", async () => {
    const p = paced(3, () => false);
    let fail!: (e: Error) => void;
    const failing = p.pace.duringStop(() => new Promise<void>((_, reject) => (fail = reject)));
    let sliceDone = false;
    const slice = p.slice(5).then(() => (sliceDone = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(sliceDone).toBe(false);
    fail(new Error("refused"));
    await expect(failing).rejects.toThrow("refused");
    await vi.advanceTimersByTimeAsync(0);
    expect(sliceDone).toBe(true); // no stop left running
    await slice;

    const off = paced(0, () => true);
    const stop = heldStop(off.pace);
    let offDone = false;
    const offSlice = off.slice(5).then(() => (offDone = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(offDone).toBe(true); // BULK_PACE_RATIO=0: bulk work never waits, not for stops either
    await offSlice;
    stop.end();
    await stop.done;
    expect(off.waits).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("waits for a stop that began during its share of a send's time, and for one that began as the last ended", async () => {
    let stop: ReturnType<typeof heldStop> | null = null;
    const pace: BulkPace = new BulkPace({
      ratio: 3,
      sendsRunning: async () => true,
      // The share's wait: a recall arrives meanwhile.
      sleep: async () => void (stop = heldStop(pace)),
    });
    let done = false;
    const slice = pace.afterWork(5).then(() => (done = true));
    await vi.advanceTimersByTimeAsync(0);
    expect(stop).not.toBe(null);
    expect(done).toBe(false); // the recall that began during the share holds the next slice
    // The recall is answered, and another begins as soon as it is, before the waiting slice resumes:
    // `first.done`'s callback runs before the waiter's continuation (a Promise.race, then an await),
    // both queued when the stop ended, in that order.
    const first = stop!;
    const next = first.done.then(() => heldStop(pace));
    first.end();
    const second = await next;
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(false);
    second.end();
    await second.done;
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(true);
    await slice;
    expect(vi.getTimerCount()).toBe(0);
  });
});
