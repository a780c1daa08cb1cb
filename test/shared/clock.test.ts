import { wallTimeOf, WallTimeConverter, type Clock } from '../../src/shared/clock.js';

/** A clock whose two readings are set by the test, counting how often it is read. */
class SteppableClock implements Clock {
  reads = 0;
  constructor(
    public wallMs: number,
    public monotonic: bigint,
  ) {}

  nowMs(): number {
    this.reads += 1;
    return this.wallMs;
  }

  monotonicNs(): bigint {
    return this.monotonic;
  }

  advance(ms: number): void {
    this.wallMs += ms;
    this.monotonic += BigInt(ms) * 1_000_000n;
  }
}

describe('wall time of kernel monotonic timestamps', () => {
  it('dates an event by its age on the monotonic clock', () => {
    const clock = new SteppableClock(10_000, 5_000_000_000n);
    expect(wallTimeOf(4_000_000_000n, clock)).toBe(9_000);
    expect(new WallTimeConverter(clock).wallTimeOf(4_000_000_000n)).toBe(9_000);
  });

  it('reads the clocks once for a burst of events within the refresh interval', () => {
    const clock = new SteppableClock(1_700_000_000_000, 900_000_000_000n);
    const converter = new WallTimeConverter(clock, 1_000_000_000n);
    const times: number[] = [];
    for (let i = 0n; i < 1000n; i += 1n) {
      clock.monotonic = 900_000_000_000n + i * 100_000n;
      times.push(converter.wallTimeOf(clock.monotonic - 50_000n));
    }
    expect(clock.reads).toBe(1);
    expect(times[0]).toBeCloseTo(1_700_000_000_000 - 0.05, 3);
    expect(times[999]).toBeCloseTo(1_700_000_000_000 + 99.9 - 0.05, 3);
  });

  it('gives the same times as reading the clocks per event while the wall clock runs steadily', () => {
    const clock = new SteppableClock(1_700_000_000_000, 900_000_000_000n);
    const converter = new WallTimeConverter(clock);
    for (let step = 0; step < 50; step += 1) {
      clock.advance(137);
      const eventNs = clock.monotonic - 2_000_000n;
      expect(converter.wallTimeOf(eventNs)).toBeCloseTo(wallTimeOf(eventNs, clock), 3);
    }
  });

  it('follows a step of the wall clock once event time has moved past the refresh interval', () => {
    const clock = new SteppableClock(1_700_000_000_000, 900_000_000_000n);
    const converter = new WallTimeConverter(clock, 1_000_000_000n);
    expect(converter.wallTimeOf(900_000_000_000n)).toBe(1_700_000_000_000);
    clock.wallMs += 3_600_000; // the wall clock is set an hour forward
    clock.advance(500);
    // Within the interval the earlier reading still dates the event.
    expect(converter.wallTimeOf(clock.monotonic)).toBe(1_700_000_000_500);
    clock.advance(600);
    expect(converter.wallTimeOf(clock.monotonic)).toBe(1_700_003_601_100);
  });
});
