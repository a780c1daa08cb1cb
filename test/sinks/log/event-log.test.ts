import { jest } from '@jest/globals';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { EventLog } from '../../../src/sinks/log/event-log.js';
import {
  attributed,
  dnsLookups,
  dnsNoData,
  dnsQuery,
  insertFailure,
  podA,
} from '../../support/events.js';
import { eventDiagnosis, muslSeed004Diagnosis } from '../../support/pod-diagnoses.js';

function capture() {
  const records: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      records.push(JSON.parse(String(chunk)) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'info' }, destination), records };
}

describe('event log', () => {
  it('writes one JSON line per event with both tuples', () => {
    const { logger, records } = capture();
    const log = new EventLog({ logger, maxLinesPerWindow: 10, windowMs: 1000, nowMs: () => 0 });
    log.record(attributed(insertFailure(), podA));
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      msg: 'conntrack insert failed (snat race): packet dropped',
      event: {
        kind: 'insert_failed',
        race: 'snat',
        pod: 'shop/cart-7d9f',
        ctStatus: '0x190',
        original: { srcIp: '10.244.0.2', srcPort: 40000 },
        reply: { dstIp: '192.0.2.1' },
      },
    });
  });

  it('logs unanswered queries that name the backend that never answered, and no other DNS query counts', () => {
    const { logger, records } = capture();
    const log = new EventLog({ logger, maxLinesPerWindow: 10, windowMs: 1000, nowMs: () => 0 });
    const unanswered = dnsQuery({
      outcome: 'unanswered',
      answer: undefined,
      cause: 'none',
      count: 3,
      backends: ['10.244.2.3', '10.244.3.4'],
    });
    const base = attributed(unanswered, podA);
    const coredns = {
      namespace: 'kube-system',
      name: 'coredns-q9w4t',
      uid: 'u',
      hostNetwork: false,
    };
    log.record({
      ...base,
      attribution: {
        ...base.attribution,
        backends: [{ ip: '10.244.2.3', pod: coredns }, { ip: '10.244.3.4' }],
      },
    });
    log.record(attributed(dnsQuery(), podA));
    log.record(attributed({ ...unanswered, backends: [] }, podA));
    log.record(attributed({ ...unanswered, backends: undefined }, podA));
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      msg: '3 DNS queries unanswered, no drop on this node: sent to a backend that never answered',
      event: {
        kind: 'dns_query',
        pod: 'shop/cart-7d9f',
        outcome: 'unanswered',
        cause: 'none',
        count: 3,
        server: '10.96.0.10',
        backends: [{ ip: '10.244.2.3', pod: 'kube-system/coredns-q9w4t' }, { ip: '10.244.3.4' }],
      },
    });
  });

  it('logs a musl lookup that stopped on NODATA with the names it tried in order, and a glibc one not at all', () => {
    const { logger, records } = capture();
    const log = new EventLog({ logger, maxLinesPerWindow: 10, windowMs: 1000, nowMs: () => 0 });
    const glibc = eventDiagnosis(muslSeed004Diagnosis('glibc'));
    log.record({ ...attributed(dnsNoData(), podA), diagnosis: glibc });
    const musl = eventDiagnosis(muslSeed004Diagnosis('musl'));
    log.record({ ...attributed(dnsNoData(), podA), diagnosis: musl });
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({
      event: {
        kind: 'dns_nodata',
        domain: 'corp.test',
        requested: 'www.example.test',
        namesTried: [
          'www.example.test.shop.svc.cluster.local',
          'www.example.test.svc.cluster.local',
          'www.example.test.corp.test',
        ],
      },
    });
  });

  it('logs a window of lookups that walk the search list once, with what they cost and why, also without a pod, and none for lookups of 2 queries', () => {
    const { logger, records } = capture();
    const log = new EventLog({ logger, maxLinesPerWindow: 10, windowMs: 1000, nowMs: () => 0 });
    const lookups = (queriesPerLookup: number, count: number) =>
      dnsLookups(queriesPerLookup, count, {
        lookupEnd: queriesPerLookup === 2 ? 'answered' : 'nxdomain',
      });
    const diagnosis = eventDiagnosis(muslSeed004Diagnosis());
    log.record({ ...attributed(lookups(2, 5), podA), diagnosis });
    log.record({ ...attributed(lookups(8, 4), podA), diagnosis });
    expect(records).toEqual([]);
    log.record({ ...attributed(lookups(8, 1), podA), diagnosis });
    // Standalone: no pod, keyed by the client address; resolv.conf not read.
    log.record(attributed(lookups(8, 5), undefined, '10.244.0.9'));
    expect(records.map((record) => record.msg)).toEqual([
      'DNS lookups walk the search list: 8 queries each over 5 lookups (ndots:5 with 3 search domains); an FQDN with a trailing dot or a lower ndots costs 2',
      'DNS lookups walk the search list: 8 queries each over 5 lookups (resolv.conf not read); an FQDN with a trailing dot or a lower ndots costs 2',
    ]);
    expect(records[0]).toMatchObject({
      event: { kind: 'dns_query', pod: 'shop/cart-7d9f' },
      fanOut: { lookups: 5, meanQueries: 8, nxdomain: 5, ndots: 5, nodeLocal: false },
    });
  });

  it('turns a storm into one summary line per window that accounts for every event', () => {
    const { logger, records } = capture();
    let now = 0;
    const log = new EventLog({ logger, maxLinesPerWindow: 3, windowMs: 1000, nowMs: () => now });
    for (let i = 0; i < 1000; i += 1) log.record(attributed(insertFailure(), podA));
    now = 1000;
    log.record(attributed(insertFailure()));
    const summaries = records.filter((r) => 'storm' in r);
    expect(records.length).toBe(3 + 1 + 1);
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({
      storm: {
        suppressedEvents: 997,
        byKind: { insert_failed: 997 },
        topSources: [{ source: 'shop/cart-7d9f', events: 997 }],
      },
    });
  });

  it('flushes a pending summary on demand and stays quiet when there is none', () => {
    const { logger, records } = capture();
    const log = new EventLog({ logger, maxLinesPerWindow: 0, windowMs: 1000, nowMs: () => 0 });
    log.flush();
    expect(records).toHaveLength(0);
    log.record(attributed(insertFailure()));
    log.flush();
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ storm: { suppressedEvents: 1 } });
  });

  it('arms no flush timer until an event is suppressed, then one for the end of its window', () => {
    const { logger, records } = capture();
    let now = 0;
    const armed: { ms: number; flush: () => void; cancelled: boolean }[] = [];
    const log = new EventLog({
      logger,
      maxLinesPerWindow: 2,
      windowMs: 10_000,
      nowMs: () => now,
      timers: {
        after: (ms, flush) => {
          const timer = { ms, flush, cancelled: false };
          armed.push(timer);
          return () => {
            timer.cancelled = true;
          };
        },
      },
    });
    now = 1_000;
    log.record(attributed(insertFailure(), podA));
    log.record(attributed(insertFailure(), podA));
    expect(armed).toHaveLength(0);
    now = 4_000;
    for (let i = 0; i < 5; i += 1) log.record(attributed(insertFailure(), podA));
    expect(armed).toEqual([expect.objectContaining({ ms: 6_000, cancelled: false })]);
    now = 10_000;
    armed[0]?.flush();
    expect(records.filter((r) => 'storm' in r)).toEqual([
      expect.objectContaining({ storm: expect.objectContaining({ suppressedEvents: 5 }) }),
    ]);
    log.flush();
    expect(records.filter((r) => 'storm' in r)).toHaveLength(1);
    expect(armed).toHaveLength(1);
  });

  it('cancels the armed timer when the summary is written before it fires', () => {
    const { logger, records } = capture();
    const cancelled: boolean[] = [];
    const log = new EventLog({
      logger,
      maxLinesPerWindow: 0,
      windowMs: 1000,
      nowMs: () => 0,
      timers: {
        after: () => {
          const index = cancelled.push(false) - 1;
          return () => {
            cancelled[index] = true;
          };
        },
      },
    });
    log.record(attributed(insertFailure()));
    log.flush();
    expect(cancelled).toEqual([true]);
    expect(records).toHaveLength(1);
  });

  it('writes the summary on its own when the window ends, with the default timer', () => {
    // The default timer is the point here, so time is jest's, not a seam of the EventLog.
    jest.useFakeTimers();
    try {
      const { logger, records } = capture();
      const log = new EventLog({ logger, maxLinesPerWindow: 0, windowMs: 50, nowMs: Date.now });
      log.record(attributed(insertFailure()));
      jest.advanceTimersByTime(49);
      expect(records).toHaveLength(0);
      jest.advanceTimersByTime(1);
      expect(records).toEqual([
        expect.objectContaining({ storm: expect.objectContaining({ suppressedEvents: 1 }) }),
      ]);
    } finally {
      jest.useRealTimers();
    }
  });
});
