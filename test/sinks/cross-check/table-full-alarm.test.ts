import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { TableFullReport } from '../../../src/sinks/kubernetes-events/kubernetes-event-sink.js';
import type { ConntrackReading } from '../../../src/sources/kernel-stats/conntrack-counters.js';
import { TableFullAlarm } from '../../../src/sinks/cross-check/table-full-alarm.js';

function reading(entries: number, drop: number): ConntrackReading {
  return {
    totals: new Map([
      ['drop', drop],
      ['insert_failed', 0],
    ]),
    entries,
    hasClashResolve: true,
    reset: false,
    limit: 1000,
  };
}

describe('table-full alarm', () => {
  it('warns and posts one report per reading that finds the table full', () => {
    const lines: Record<string, unknown>[] = [];
    const logger = pino(
      new Writable({
        write(chunk, _encoding, done) {
          lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
          done();
        },
      }),
    );
    const reports: TableFullReport[] = [];
    const alarm = new TableFullAlarm({
      logger,
      events: { recordTableFull: (report) => reports.push(report) },
      nowMs: () => 1_700_000_000_000,
    });
    alarm.observe(reading(1000, 0));
    alarm.observe(reading(1000, 5));
    alarm.observe(reading(10, 5));
    expect(reports).toEqual([
      { entries: 1000, limit: 1000, drops: 5, wallTimeMs: 1_700_000_000_000 },
    ]);
    expect(lines.map((line) => [line.level, line.msg, line.drops])).toEqual([
      [40, 'conntrack table full: new flows are being dropped', 5],
    ]);
  });
});
