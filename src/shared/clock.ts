/** Time as the agent needs it; injected so that tests control it. */
export interface Clock {
  /** Wall-clock milliseconds since the epoch. */
  nowMs(): number;
  /** CLOCK_MONOTONIC nanoseconds: the clock bpftrace's `nsecs` reads. */
  monotonicNs(): bigint;
}

export const systemClock: Clock = {
  nowMs: () => Date.now(),
  // libuv's hrtime is CLOCK_MONOTONIC on Linux, the same clock as the kernel's ktime_get_ns.
  monotonicNs: () => process.hrtime.bigint(),
};

/** Converts a kernel monotonic timestamp into wall-clock milliseconds. */
export function wallTimeOf(monotonicNs: bigint, clock: Clock): number {
  const ageNs = clock.monotonicNs() - monotonicNs;
  return clock.nowMs() - Number(ageNs) / 1e6;
}

// A wall-clock step (NTP, an operator) shows in event times at most this late.
const DEFAULT_REFRESH_NS = 1_000_000_000n;

/**
 * wallTimeOf for a stream of events: reads both clocks once and reuses that reading while the
 * events' own timestamps stay within `refreshNs` of it. Reading the clocks per event costs more
 * than decoding the event; the offset between them only moves when the wall clock is stepped.
 */
export class WallTimeConverter {
  private readingMonotonicNs = 0n;
  private readingWallMs = 0;
  private refreshDueNs = -1n;

  constructor(
    private readonly clock: Clock,
    private readonly refreshNs: bigint = DEFAULT_REFRESH_NS,
  ) {}

  wallTimeOf(monotonicNs: bigint): number {
    if (monotonicNs > this.refreshDueNs) {
      this.readingMonotonicNs = this.clock.monotonicNs();
      this.readingWallMs = this.clock.nowMs();
      this.refreshDueNs = this.readingMonotonicNs + this.refreshNs;
    }
    return this.readingWallMs - Number(this.readingMonotonicNs - monotonicNs) / 1e6;
  }
}
