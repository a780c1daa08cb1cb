import { Writable } from 'node:stream';
import { pino } from 'pino';
import { createDropReasonTable } from '../../../src/detect/drop-reasons.js';
import type { ProbeEvent } from '../../../src/events/types.js';
import type { Clock } from '../../../src/shared/clock.js';
import { CountRecords } from '../../../src/sources/bpftrace/count-records.js';
import { probeKeyOfIpv4 } from '../../support/probe-keys.js';

const PROBE = 'tracepoint/conntrack-insert-failed';
// A SNAT race key as the probe prints it: netns, race, protocol, then the tuples' addresses
// (u32 of network-order bytes) and server ports (53 read little-endian is 0x3500).
const ip = probeKeyOfIpv4;
const snatKey = [
  4026532420,
  1,
  17,
  ip('10.244.0.2'),
  ip('192.0.2.53'),
  0x3500,
  ip('192.0.2.53'),
  0x3500,
  ip('192.0.2.1'),
].join(',');

function harness() {
  const events: ProbeEvent[] = [];
  const shortfalls: string[] = [];
  const logLines: Record<string, unknown>[] = [];
  const clock: Clock = { nowMs: () => 0, monotonicNs: () => 5n };
  const counts = new CountRecords({
    dropReasons: createDropReasonTable([]),
    clock,
    onEvent: (event) => events.push(event),
    shortfalls: {
      recordUntrackedDnsQueries: (count) => shortfalls.push(`untracked ${count}`),
      recordUncountedDnsDrops: (reason, count) => shortfalls.push(`dns ${reason} ${count}`),
      recordUncountedInsertFailures: (race, count) => shortfalls.push(`race ${race} ${count}`),
      recordRejectedKeys: (probe, keys) => shortfalls.push(`rejected ${probe} ${keys}`),
    },
    logger: pino(
      new Writable({
        write(chunk, _encoding, done) {
          logLines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
          done();
        },
      }),
    ),
  });
  return { counts, events, shortfalls, logLines };
}

describe('count records: the probes printed count maps to events', () => {
  it('turns the growth of an insert-failure map into events with their count', () => {
    const { counts, events } = harness();
    counts.handle(
      { type: 'counts', map: '@insert_failures_1', entries: [{ key: snatKey, value: 4 }] },
      PROBE,
      1,
    );
    counts.handle(
      { type: 'counts', map: '@insert_failures_1', entries: [{ key: snatKey, value: 6 }] },
      PROBE,
      1,
    );
    expect(events.map((event) => [event.kind, 'count' in event ? event.count : undefined])).toEqual(
      [
        ['insert_failed', 4],
        ['insert_failed', 2],
      ],
    );
  });

  it("hands the DNS-query probe's map_cleared to its tracker: the cleared generation counts from zero", () => {
    const { counts, events } = harness();
    const probe = 'tracepoint/dns-queries';
    const key = `4026532420,${ip('10.244.0.2')}`;
    const parallel = (value: number) =>
      ({ type: 'counts', map: '@dns_q_parallel_0', entries: [{ key, value }] }) as const;
    counts.handle(parallel(3), probe, 1);
    counts.handle(parallel(3), probe, 1);
    counts.handle({ type: 'map_cleared', map: '@dns_q_parallel_0' }, probe, 1);
    counts.handle(parallel(2), probe, 1);
    expect(events.map((event) => ('count' in event ? event.count : undefined))).toEqual([3, 2]);
  });

  it('starts the counts over for a new bpftrace run', () => {
    const { counts, events } = harness();
    const record = {
      type: 'counts' as const,
      map: '@insert_failures_1',
      entries: [{ key: snatKey, value: 4 }],
    };
    counts.handle(record, PROBE, 1);
    counts.handle(record, PROBE, 2);
    expect(events.map((event) => ('count' in event ? event.count : undefined))).toEqual([4, 4]);
  });

  it('counts and logs keys not as the probe prints them, leaving their counts out', () => {
    const { counts, events, shortfalls, logLines } = harness();
    counts.handle(
      { type: 'counts', map: '@insert_failures_0', entries: [{ key: 'not,a,key', value: 1 }] },
      PROBE,
      1,
    );
    expect(events).toEqual([]);
    expect(shortfalls).toEqual([`rejected ${PROBE} 1`]);
    expect(logLines).toEqual([expect.objectContaining({ probe: PROBE, keys: ['not,a,key'] })]);
  });
});
