import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { UnansweredBackends, UnrepliedBackends } from '../../src/attribute/unanswered-backends.js';
import type { ProbeEvent } from '../../src/events/types.js';
import { parseConntrackList } from '../../src/sources/conntrack-table/conntrack-list.js';
import type { DnsFlowsResult } from '../../src/sources/conntrack-table/dns-flows.js';
import { dnsDrop, dnsQuery } from '../support/events.js';

/**
 * `conntrack -L -p udp --orig-port-dst 53` in the lab's node namespace while one of the two
 * dnsmasq backends behind the ClusterIP 10.96.0.10 was stopped (SIGSTOP): pod 10.244.0.2's
 * flows to 192.0.2.53 unreplied, those to 192.0.2.54 answered (both SNATed to the node's
 * 192.0.2.1 on the way out).
 */
const TABLE = readFileSync(
  new URL('../fixtures/conntrack/list-udp-53-backend-stopped.txt', import.meta.url),
  'utf8',
);
const CLIENT = '10.244.0.2';
const CLUSTER_IP = '10.96.0.10';
const STOPPED = '192.0.2.53';
const PERIOD_MS = 5_000;

const unanswered = (srcIp = CLIENT) =>
  dnsQuery({
    outcome: 'unanswered',
    answer: undefined,
    latencyBucketSeconds: undefined,
    cause: 'none',
    count: 3,
    tuple: { srcIp, srcPort: 0, dstIp: CLUSTER_IP, dstPort: 53 },
  });

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

function stage(read: () => Promise<DnsFlowsResult>, maxHeld = 100) {
  const forwarded: ProbeEvent[] = [];
  const { logger, records } = capture();
  const registry = new Registry();
  let reads = 0;
  // Time as the test moves it: the reads' spacing is checked without waiting.
  let now = 1_000_000;
  const due: { atMs: number; tick: () => void }[] = [];
  const backends = new UnansweredBackends({
    readFlows: () => {
      reads += 1;
      return read();
    },
    forward: (event) => forwarded.push(event),
    logger,
    registry,
    maxHeld,
    minIntervalMs: PERIOD_MS,
    nowMs: () => now,
    timers: {
      after: (ms, tick) => {
        due.push({ atMs: now + ms, tick });
        return () => undefined;
      },
    },
  });
  const settled = () => new Promise((resolve) => setImmediate(resolve));
  const advance = async (ms: number) => {
    now += ms;
    const ready = due.filter((timer) => timer.atMs <= now);
    due.splice(0, due.length, ...due.filter((timer) => timer.atMs > now));
    for (const timer of ready) timer.tick();
    await settled();
  };
  return { backends, forwarded, records, registry, reads: () => reads, settled, advance };
}

const table = (): Promise<DnsFlowsResult> =>
  Promise.resolve({ ok: true, list: parseConntrackList(TABLE) });

describe('UnrepliedBackends', () => {
  it("names the backend a client's unreplied flows to the ClusterIP were DNATed to, not the one that answered", () => {
    const { entries, malformed } = parseConntrackList(TABLE);
    expect(malformed).toBe(0);
    expect(new UnrepliedBackends(entries).of(CLIENT, CLUSTER_IP)).toEqual([STOPPED]);
  });

  it('names nothing for another client, another server or a flow that was not translated', () => {
    const { entries } = parseConntrackList(
      [
        ...TABLE.split('\n'),
        // Sent to a backend directly: the server asked is the one that did not answer.
        'udp      17 25 src=10.244.0.3 dst=192.0.2.54 sport=41000 dport=53 [UNREPLIED] src=192.0.2.54 dst=10.244.0.3 sport=53 dport=41000 mark=0 use=1',
      ].join('\n'),
    );
    const unreplied = new UnrepliedBackends(entries);
    expect(unreplied.of('10.244.0.9', CLUSTER_IP)).toEqual([]);
    expect(unreplied.of(CLIENT, '10.96.0.11')).toEqual([]);
    expect(unreplied.of('10.244.0.3', '192.0.2.54')).toEqual([]);
  });
});

describe('UnansweredBackends', () => {
  it('holds a period of unanswered queries with no drop for one read of the table, then names their backend', async () => {
    const { backends, forwarded, reads, settled } = stage(table);
    backends.handle(unanswered());
    backends.handle(unanswered('10.244.0.9'));
    expect(forwarded).toHaveLength(0);
    await settled();
    expect(reads()).toBe(1);
    expect(forwarded).toEqual([
      { ...unanswered(), backends: [STOPPED] },
      { ...unanswered('10.244.0.9'), backends: [] },
    ]);
  });

  it('passes every other event at once and reads nothing for them', async () => {
    const { backends, forwarded, reads, settled } = stage(table);
    const others: ProbeEvent[] = [
      dnsQuery(),
      { ...unanswered(), cause: 'firewall' },
      dnsDrop({ count: 2 }),
    ];
    for (const event of others) backends.handle(event);
    expect(forwarded).toEqual(others);
    await settled();
    expect(reads()).toBe(0);
  });

  it('names queries reported while a read runs from that read (their flows were in the table before it), reads at most once a period, and forwards past its bound without waiting', async () => {
    let release: (result: DnsFlowsResult) => void = () => undefined;
    const { backends, forwarded, reads, settled, advance } = stage(
      () => new Promise((resolve) => (release = resolve)),
      2,
    );
    backends.handle(unanswered());
    await settled();
    backends.handle(unanswered('10.244.0.7'));
    backends.handle(unanswered('10.244.0.9'));
    expect(forwarded).toEqual([unanswered('10.244.0.9')]);
    release({ ok: true, list: parseConntrackList(TABLE) });
    await settled();
    expect(reads()).toBe(1);
    expect(forwarded.slice(1)).toEqual([
      { ...unanswered(), backends: [STOPPED] },
      { ...unanswered('10.244.0.7'), backends: [] },
    ]);
    // Resent queries reported a second later wait for the next period's read.
    backends.handle(unanswered());
    await advance(1_000);
    expect(reads()).toBe(1);
    expect(forwarded).toHaveLength(3);
    await advance(PERIOD_MS - 1_000);
    expect(reads()).toBe(2);
    release({ ok: true, list: parseConntrackList(TABLE) });
    await settled();
    expect(forwarded).toHaveLength(4);
    expect(forwarded[3]).toEqual({ ...unanswered(), backends: [STOPPED] });
  });

  it('leaves the backends unknown when the table cannot be read, warning once until it can again', async () => {
    let result: DnsFlowsResult = { ok: false, error: 'conntrack -L failed: ENOENT' };
    const { backends, forwarded, records, registry, settled, advance } = stage(() =>
      Promise.resolve(result),
    );
    for (let period = 0; period < 3; period += 1) {
      backends.handle(unanswered());
      await settled();
      await advance(PERIOD_MS);
    }
    expect(forwarded).toEqual([unanswered(), unanswered(), unanswered()]);
    const warnings = records.filter((record) => record.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ error: 'conntrack -L failed: ENOENT' });
    expect(
      await registry.getSingleMetricAsString('conntrack_observer_conntrack_list_failures_total'),
    ).toContain(' 3');
    result = { ok: true, list: parseConntrackList(`${TABLE}\nnot a conntrack line\n`) };
    backends.handle(unanswered());
    await settled();
    expect(forwarded[3]).toEqual({ ...unanswered(), backends: [STOPPED] });
    expect(
      await registry.getSingleMetricAsString(
        'conntrack_observer_conntrack_list_malformed_lines_total',
      ),
    ).toContain(' 1');
  });

  it('forwards unchanged when the read itself throws', async () => {
    const { backends, forwarded, settled } = stage(() => Promise.reject(new Error('boom')));
    backends.handle(unanswered());
    await settled();
    expect(forwarded).toEqual([unanswered()]);
  });
});
