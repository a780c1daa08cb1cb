import type { ConntrackReading } from '../../../src/sources/kernel-stats/conntrack-counters.js';
import { TableFullDetector } from '../../../src/sinks/cross-check/table-full-detector.js';

function reading(
  entries: number,
  drop: number,
  insertFailed: number,
  limit = 1000,
): ConntrackReading {
  return {
    totals: new Map([
      ['drop', drop],
      ['insert_failed', insertFailed],
    ]),
    entries,
    hasClashResolve: true,
    reset: false,
    limit,
  };
}

describe('table-full detector', () => {
  it('reports drops of new flows while the table is full', () => {
    const detector = new TableFullDetector();
    expect(detector.observe(reading(990, 10, 0))).toBeUndefined();
    expect(detector.observe(reading(1000, 25, 3))).toEqual({
      entries: 1000,
      limit: 1000,
      drops: 12,
    });
  });

  it('does not take insertion-race drops for a full table', () => {
    const detector = new TableFullDetector();
    detector.observe(reading(999, 0, 0));
    expect(detector.observe(reading(999, 40, 40))).toBeUndefined();
  });

  it('stays quiet while the table has room, whatever the drops', () => {
    const detector = new TableFullDetector();
    detector.observe(reading(100, 0, 0));
    expect(detector.observe(reading(100, 500, 0))).toBeUndefined();
  });

  it('needs a limit and a previous reading of the same namespace', () => {
    const detector = new TableFullDetector();
    expect(detector.observe(reading(1000, 50, 0))).toBeUndefined();
    expect(detector.observe({ ...reading(1000, 90, 0), reset: true })).toBeUndefined();
    expect(detector.observe({ ...reading(1000, 95, 0), limit: undefined })).toBeUndefined();
  });
});
