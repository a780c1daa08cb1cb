import type { Clock } from '../../src/shared/clock.js';

/** A clock that moves only when told. */
export class ManualClock implements Clock {
  constructor(private ms = Date.parse('2025-03-14T10:00:00Z')) {}

  nowMs(): number {
    return this.ms;
  }

  monotonicNs(): bigint {
    return BigInt(this.ms) * 1_000_000n;
  }

  advance(ms: number): void {
    this.ms += ms;
  }
}
