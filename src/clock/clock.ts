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
