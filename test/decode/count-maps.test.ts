import { createLineDecoder } from '../../src/decode/decode.js';
import type { DecodedLine } from '../../src/decode/decoded-line.js';
import { DnsDropCounts } from '../../src/decode/dns-drop-counts.js';
import { InsertFailureCounts } from '../../src/decode/insert-failure-counts.js';
import { probeKeyOfIpv4 } from '../support/probe-keys.js';

const reasonNames: Record<number, string> = { 3: 'NO_SOCKET', 12: 'NETFILTER_DROP' };
const reasonName = (code: number): string => reasonNames[code] ?? `UNKNOWN_${code}`;
const decode = createLineDecoder('tracepoint/dns-drops', reasonName);

const ip = probeKeyOfIpv4;
const POD = ip('10.244.0.2');
const CLUSTER_IP = ip('10.96.0.10');
const NODE = ip('192.0.2.1');
const UPSTREAM = ip('192.0.2.53');
const NETNS = 4026532420;

const key = (fields: (string | number)[]): string => fields.join(',');
const firewallKey = key([NETNS, 12, 'nft_do_chain', 1, POD, CLUSTER_IP, 1, POD, CLUSTER_IP]);
const noSocketKey = key([NETNS, 3, '__udp4_lib_rcv', 1, NODE, UPSTREAM, 1, POD, UPSTREAM]);

function mapLine(map: string, entries: Record<string, number>): string {
  return JSON.stringify({ type: 'map', data: { [map]: entries } });
}

function counts(line: string): { map: string; entries: { key: string; value: number }[] } {
  const decoded: DecodedLine = decode(line);
  if (decoded.type !== 'counts') throw new Error(`not counts: ${JSON.stringify(decoded)}`);
  return { map: decoded.map, entries: [...decoded.entries] };
}

function tracker(): DnsDropCounts {
  return new DnsDropCounts({ probe: 'tracepoint/dns-drops', reasonName, monotonicNs: () => 7n });
}

function observe(counter: DnsDropCounts, map: string, entries: Record<string, number>) {
  const record = counts(mapLine(map, entries));
  return counter.observe(record.map, record.entries);
}

describe('decoding the count maps the DNS-drop probe prints', () => {
  it('reads a printed map of counts, keys as bpftrace joined them', () => {
    expect(decode(mapLine('@dns_drops_0', { [firewallKey]: 5 }))).toEqual({
      type: 'counts',
      map: '@dns_drops_0',
      entries: [{ key: firewallKey, value: 5 }],
    });
  });

  it('ignores a map of one value, and rejects a value that is not a count', () => {
    expect(decode('{"type": "map", "data": {"@dns_ticks": 3}}')).toEqual({
      type: 'ignored',
      recordType: 'map',
    });
    expect(decode(mapLine('@dns_drops_0', { a: -1 }))).toMatchObject({
      type: 'rejected',
      code: 'bad_count',
    });
    expect(decode(mapLine('@dns_drops_0', { a: 1.5 }))).toMatchObject({ code: 'bad_count' });
    expect(decode('{"type": "map", "data": {"no-at": {"a": 1}}}')).toMatchObject({
      code: 'bad_field',
    });
    expect(decode('{"type": "map", "data": []}')).toMatchObject({ code: 'bad_field' });
  });

  it('reads the clearing of a generation map, and rejects a name that is not a map', () => {
    const line = JSON.stringify({ type: 'printf', data: 'map_cleared 1 @dns_drops_1\n' });
    expect(decode(line)).toEqual({ type: 'map_cleared', map: '@dns_drops_1' });
    const bad = JSON.stringify({ type: 'printf', data: 'map_cleared 1 dns drops\n' });
    expect(decode(bad)).toMatchObject({ type: 'rejected' });
  });

  it('reads a schema-3 dns_drop line as an example that counts nothing', () => {
    const line = JSON.stringify({
      type: 'printf',
      data: 'dns_drop 3 5036542919870 1 4026532420 12 10.244.0.2 41234 10.96.0.10 53 nft_do_chain 0x100 10.244.0.2 41234 10.96.0.10 53\n',
    });
    const decoded = decode(line);
    expect(decoded).toMatchObject({
      type: 'event',
      event: { kind: 'dns_drop', count: 0, reason: 'NETFILTER_DROP', direction: 'query' },
    });
  });
});

describe('DnsDropCounts: IPv6 datagrams, keyed by u64 address halves', () => {
  // Each address as two u64 halves of its bytes read little-endian, as the probes key them
  // (bpftrace's values for these addresses, as in the insert-failure maps' tests).
  const POD6 = ['74775649059069', '144115188075855872']; // fd00:10:244::2
  const UPSTREAM6 = ['3087860000', '5980780305148018688']; // 2001:db8::53
  const NODE6 = ['3087860000', '72057594037927936']; // 2001:db8::1
  const ZERO6 = ['0', '0'];
  const firewall6 = key([
    NETNS,
    12,
    'nft_do_chain',
    1,
    ...POD6,
    ...UPSTREAM6,
    1,
    ...POD6,
    ...UPSTREAM6,
  ]);
  const noSocket6 = key([
    NETNS,
    3,
    '__udp6_lib_rcv',
    1,
    ...NODE6,
    ...UPSTREAM6,
    0,
    ...ZERO6,
    ...ZERO6,
  ]);

  it('reads IPv6 keys into canonical addresses, counted under the totals of both families', () => {
    const counter = tracker();
    observe(counter, '@dns_drop_totals', { '12': 7, '3': 2 });
    observe(counter, '@dns_drops_0', { [firewallKey]: 2 });
    const { events } = observe(counter, '@dns_drops6_0', { [firewall6]: 5, [noSocket6]: 2 });
    expect(events).toEqual([
      expect.objectContaining({
        reason: 'NETFILTER_DROP',
        direction: 'query',
        tuple: { srcIp: 'fd00:10:244::2', srcPort: 0, dstIp: '2001:db8::53', dstPort: 53 },
        conntrack: expect.objectContaining({
          original: { srcIp: 'fd00:10:244::2', srcPort: 0, dstIp: '2001:db8::53', dstPort: 53 },
          lostInsertRace: false,
        }) as unknown,
        count: 5,
      }),
      expect.objectContaining({
        reason: 'NO_SOCKET',
        tuple: { srcIp: '2001:db8::1', srcPort: 0, dstIp: '2001:db8::53', dstPort: 53 },
        count: 2,
      }),
    ]);
    expect(events[1]?.conntrack).toBeUndefined();
    // IPv4 and IPv6 detailed counts together make the totals: nothing uncounted.
    observe(counter, '@dns_drop_totals', { '12': 7, '3': 2 });
    expect(observe(counter, '@dns_drop_totals', { '12': 7, '3': 2 }).uncounted).toEqual(new Map());
  });

  it('counts a cleared IPv6 generation from zero again, apart from the IPv4 one', () => {
    const counter = tracker();
    observe(counter, '@dns_drops_0', { [firewallKey]: 4 });
    observe(counter, '@dns_drops6_0', { [firewall6]: 5 });
    counter.cleared('@dns_drops6_0');
    expect(observe(counter, '@dns_drops6_0', { [firewall6]: 1 }).events[0]?.count).toBe(1);
    expect(observe(counter, '@dns_drops_0', { [firewallKey]: 4 }).events).toEqual([]);
  });

  it.each([
    [
      'a half past u64',
      [
        NETNS,
        12,
        'nft_do_chain',
        1,
        '18446744073709551616',
        '0',
        ...UPSTREAM6,
        0,
        ...ZERO6,
        ...ZERO6,
      ],
    ],
    [
      'a half that is no number',
      [NETNS, 12, 'nft_do_chain', 1, 'fd00::2', '0', ...UPSTREAM6, 0, ...ZERO6, ...ZERO6],
    ],
    ['one field short', [NETNS, 12, 'nft_do_chain', 1, ...POD6, ...UPSTREAM6, 0, ...ZERO6, '0']],
    [
      'a conntrack class past 2',
      [NETNS, 12, 'nft_do_chain', 1, ...POD6, ...UPSTREAM6, 3, ...ZERO6, ...ZERO6],
    ],
  ])('rejects an IPv6 key with %s', (_, fields) => {
    const bad = key(fields);
    expect(observe(tracker(), '@dns_drops6_1', { [bad]: 1 }).rejectedKeys).toEqual([bad]);
  });

  it('reads schema-4 dns_drop lines of either family, IPv6 addresses made canonical', () => {
    const printf = (data: string) => JSON.stringify({ type: 'printf', data: `${data}\n` });
    expect(
      decode(
        printf(
          'dns_drop 4 5036542919870 1 4026532420 12 ipv6 fd00:10:244:0:0:0:0:2 41234 2001:DB8::66 53 nft_do_chain 0x100 fd00:10:244::2 41234 2001:db8::66 53',
        ),
      ),
    ).toMatchObject({
      type: 'event',
      event: {
        kind: 'dns_drop',
        count: 0,
        reason: 'NETFILTER_DROP',
        direction: 'query',
        tuple: { srcIp: 'fd00:10:244::2', srcPort: 41234, dstIp: '2001:db8::66', dstPort: 53 },
        conntrack: { status: 0x100, original: { srcIp: 'fd00:10:244::2', dstIp: '2001:db8::66' } },
      },
    });
    // No conntrack entry: the unspecified address and status 0.
    const noEntry = decode(
      printf(
        'dns_drop 4 5036542919870 1 4026532420 3 ipv6 2001:db8::1 41234 2001:db8::99 53 __udp6_lib_rcv 0x0 :: 0 :: 0',
      ),
    );
    expect(noEntry).toMatchObject({ type: 'event', event: { reason: 'NO_SOCKET', count: 0 } });
    expect(
      noEntry.type === 'event' && noEntry.event.kind === 'dns_drop' && noEntry.event.conntrack,
    ).toBe(undefined);
    expect(
      decode(
        printf(
          'dns_drop 4 5036542919870 1 4026532420 - ipv4 10.244.0.2 41234 192.0.2.99 53 __udp4_lib_rcv 0x0 0.0.0.0 0 0.0.0.0 0',
        ),
      ),
    ).toMatchObject({
      type: 'event',
      event: { reason: 'NO_SOCKET', tuple: { dstIp: '192.0.2.99' } },
    });
  });

  it.each([
    [
      'an IPv6 address in an ipv4 record',
      'ipv4 fd00::2 41234 192.0.2.99 53 x 0x0 0.0.0.0 0 0.0.0.0 0',
    ],
    ['an IPv4 address in an ipv6 record', 'ipv6 10.244.0.2 41234 2001:db8::99 53 x 0x0 :: 0 :: 0'],
    [
      'an IPv4 original in an ipv6 record',
      'ipv6 fd00::2 41234 2001:db8::99 53 x 0x100 0.0.0.0 0 :: 0',
    ],
    ['an IPv6 address with a zone', 'ipv6 fe80::1%eth0 41234 2001:db8::99 53 x 0x0 :: 0 :: 0'],
    ['an unknown family', 'ipv5 10.244.0.2 41234 192.0.2.99 53 x 0x0 0.0.0.0 0 0.0.0.0 0'],
  ])('rejects a schema-4 dns_drop line with %s', (_, rest) => {
    const line = JSON.stringify({
      type: 'printf',
      data: `dns_drop 4 10 1 4026532420 12 ${rest}\n`,
    });
    expect(decode(line)).toMatchObject({ type: 'rejected', code: 'bad_field' });
  });
});

describe('DnsDropCounts: cumulative kernel counts to events', () => {
  it('hands on each key once per growth, with the growth as its count', () => {
    const counter = tracker();
    const first = observe(counter, '@dns_drops_0', { [firewallKey]: 5, [noSocketKey]: 2 });
    expect(first.events.map((event) => event.count)).toEqual([5, 2]);
    expect(first.events[0]).toMatchObject({
      kind: 'dns_drop',
      netnsInode: NETNS,
      reason: 'NETFILTER_DROP',
      direction: 'query',
      location: 'nft_do_chain',
      tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 },
      conntrack: { original: { srcIp: '10.244.0.2', dstIp: '10.96.0.10' }, lostInsertRace: false },
      monotonicNs: 7n,
    });
    const second = observe(counter, '@dns_drops_0', { [firewallKey]: 9, [noSocketKey]: 2 });
    expect(second.events.map((event) => [event.reason, event.count])).toEqual([
      ['NETFILTER_DROP', 4],
    ]);
  });

  it('counts a cleared generation from zero again, and the other generation apart', () => {
    const counter = tracker();
    observe(counter, '@dns_drops_0', { [firewallKey]: 5 });
    observe(counter, '@dns_drops_1', { [firewallKey]: 2 });
    counter.cleared('@dns_drops_0');
    const after = observe(counter, '@dns_drops_0', { [firewallKey]: 3 });
    expect(after.events.map((event) => event.count)).toEqual([3]);
    expect(observe(counter, '@dns_drops_1', { [firewallKey]: 2 }).events).toEqual([]);
  });

  it('marks the insert-race signature only where the kernel freed it at the confirm hook', () => {
    const counter = tracker();
    const race = key([NETNS, 12, 'nf_hook_slow', 1, NODE, UPSTREAM, 2, POD, UPSTREAM]);
    const rule = key([NETNS, 12, 'nft_do_chain', 1, NODE, UPSTREAM, 2, POD, UPSTREAM]);
    const { events } = observe(counter, '@dns_drops_0', { [race]: 1, [rule]: 1 });
    expect(events.map((event) => event.conntrack?.lostInsertRace)).toEqual([true, false]);
  });

  it('names the reason from where the datagram was freed on kernels without drop reasons', () => {
    const counter = tracker();
    const noReason = key([NETNS, 0xffffffff, '__udp4_lib_rcv', 1, NODE, UPSTREAM, 0, 0, 0]);
    const { events } = observe(counter, '@dns_drops_0', { [noReason]: 4 });
    expect(events[0]).toMatchObject({ reason: 'NO_SOCKET', count: 4 });
    expect(events[0]?.conntrack).toBeUndefined();
  });

  it('reports what the totals counted beyond the detailed keys (a full map), never more', () => {
    const counter = tracker();
    // Totals first, then the detailed map read after them: they agree, nothing uncounted.
    observe(counter, '@dns_drop_totals', { '12': 5 });
    observe(counter, '@dns_drops_0', { [firewallKey]: 6 });
    expect(observe(counter, '@dns_drop_totals', { '12': 10 }).uncounted).toEqual(new Map());
    // The map is full: 4 more drops in the totals, none in a detailed key.
    observe(counter, '@dns_drops_0', { [firewallKey]: 10 });
    const full = observe(counter, '@dns_drop_totals', { '12': 14 });
    expect(full.uncounted).toEqual(new Map());
    const next = observe(counter, '@dns_drop_totals', { '12': 14 });
    expect(next.uncounted).toEqual(new Map([['NETFILTER_DROP', 4]]));
    expect(observe(counter, '@dns_drop_totals', { '12': 14 }).uncounted).toEqual(new Map());
  });

  it('leaves out keys that are not as the probe prints them, naming them', () => {
    const counter = tracker();
    const update = observe(counter, '@dns_drops_0', {
      'a,b': 1,
      [key([NETNS, 12, 'x', 2, POD, CLUSTER_IP, 7, 0, 0])]: 1,
      [firewallKey]: 1,
    });
    expect(update.rejectedKeys).toHaveLength(2);
    expect(update.events).toHaveLength(1);
  });

  it('ignores maps that are not its own, and starts over on reset', () => {
    const counter = tracker();
    expect(observe(counter, '@dns_examples', { a: 1 }).events).toEqual([]);
    observe(counter, '@dns_drops_0', { [firewallKey]: 5 });
    counter.reset();
    expect(observe(counter, '@dns_drops_0', { [firewallKey]: 5 }).events[0]?.count).toBe(5);
  });
});

describe('InsertFailureCounts: the insert-failure probes kernel counts to events', () => {
  const counter = () =>
    new InsertFailureCounts({ probe: 'tracepoint/conntrack-insert-failed', monotonicNs: () => 9n });
  // Server ports as the tuple holds them, network order read little-endian: 53 is 0x3500.
  const port53 = 0x3500;

  it('reads the race kind, both addresses of each side and the server ports', () => {
    const tracker = counter();
    const snat = key([NETNS, 1, 17, POD, UPSTREAM, port53, UPSTREAM, port53, NODE]);
    const record = counts(mapLine('@insert_failures_1', { [snat]: 4 }));
    const { events } = tracker.observe(record.map, record.entries);
    expect(events).toEqual([
      {
        kind: 'insert_failed',
        probe: 'tracepoint/conntrack-insert-failed',
        monotonicNs: 9n,
        cpu: 0,
        netnsInode: NETNS,
        protocol: 'udp',
        ctStatus: 0x180,
        original: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '192.0.2.53', dstPort: 53 },
        reply: { srcIp: '192.0.2.53', srcPort: 53, dstIp: '192.0.2.1', dstPort: 0 },
        race: 'snat',
        count: 4,
      },
    ]);
  });

  it('reports a full map by race kind, and rejects a race code it does not know', () => {
    const tracker = counter();
    const observeLine = (map: string, entries: Record<string, number>) => {
      const record = counts(mapLine(map, entries));
      return tracker.observe(record.map, record.entries);
    };
    observeLine('@insert_failure_totals', { '3': 2 });
    observeLine('@insert_failures_0', {});
    expect(observeLine('@insert_failure_totals', { '3': 2 }).uncounted).toEqual(
      new Map([['snat_dnat', 2]]),
    );
    const bad = key([NETNS, 4, 17, POD, UPSTREAM, port53, UPSTREAM, port53, NODE]);
    expect(observeLine('@insert_failures_0', { [bad]: 1 }).rejectedKeys).toEqual([bad]);
  });

  // IPv6 keys: each address as two u64 halves of its bytes read little-endian, as the probes
  // key them (values as bpftrace printed them for these addresses, test/fixtures/kprobe).
  const POD6 = ['74775649059069', '144115188075855872']; // fd00:10:244::2
  const UPSTREAM6 = ['3087860000', '5980780305148018688']; // 2001:db8::53
  const NODE6 = ['3087860000', '72057594037927936']; // 2001:db8::1

  it('reads an IPv6 key of the IPv6 maps into canonical addresses, under the same totals', () => {
    const tracker = counter();
    const snat6 = [
      NETNS,
      1,
      17,
      ...POD6,
      ...UPSTREAM6,
      port53,
      ...UPSTREAM6,
      port53,
      ...NODE6,
    ].join(',');
    const observeLine = (map: string, entries: Record<string, number>) => {
      const record = counts(mapLine(map, entries));
      return tracker.observe(record.map, record.entries);
    };
    observeLine('@insert_failure_totals', { '1': 3 });
    const { events } = observeLine('@insert_failures6_0', { [snat6]: 3 });
    expect(events).toEqual([
      expect.objectContaining({
        original: { srcIp: 'fd00:10:244::2', srcPort: 0, dstIp: '2001:db8::53', dstPort: 53 },
        reply: { srcIp: '2001:db8::53', srcPort: 53, dstIp: '2001:db8::1', dstPort: 0 },
        race: 'snat',
        count: 3,
      }),
    ]);
    // Totals of both families against the detailed counts of both: nothing uncounted.
    expect(observeLine('@insert_failure_totals', { '1': 3 }).uncounted).toEqual(new Map());
  });

  it.each([
    [
      'a half past u64',
      [
        NETNS,
        1,
        17,
        '18446744073709551616',
        '0',
        ...UPSTREAM6,
        port53,
        ...UPSTREAM6,
        port53,
        ...NODE6,
      ],
    ],
    [
      'a half that is no number',
      [NETNS, 1, 17, 'fd00::2', '0', ...UPSTREAM6, port53, ...UPSTREAM6, port53, ...NODE6],
    ],
    [
      'one field short',
      [NETNS, 1, 17, ...POD6, ...UPSTREAM6, port53, ...UPSTREAM6, port53, NODE6[0]],
    ],
  ])('rejects an IPv6 key with %s', (_, fields) => {
    const tracker = counter();
    const bad = fields.join(',');
    const record = counts(mapLine('@insert_failures6_1', { [bad]: 1 }));
    expect(tracker.observe(record.map, record.entries).rejectedKeys).toEqual([bad]);
  });

  it('reads a schema-3 insert_failed line of either family, IPv6 addresses made canonical', () => {
    const line = JSON.stringify({
      type: 'printf',
      data: 'insert_failed 3 5036542919870 1 4026532420 0x190 17 ipv6 fd00:10:244:0:0:0:0:2 40000 2001:DB8::53 53 2001:db8::53 53 2001:db8::1 40000 nf_hook_slow\n',
    });
    expect(decode(line)).toMatchObject({
      type: 'event',
      event: {
        kind: 'insert_failed',
        race: 'snat',
        count: 0,
        original: { srcIp: 'fd00:10:244::2', dstIp: '2001:db8::53' },
      },
    });
    const v4 = JSON.stringify({
      type: 'printf',
      data: 'insert_failed 3 5036542919870 1 4026532420 0x190 17 ipv4 10.244.0.2 40000 192.0.2.53 53 192.0.2.53 53 192.0.2.1 40000 nf_hook_slow\n',
    });
    expect(decode(v4)).toMatchObject({ type: 'event', event: { race: 'snat', count: 0 } });
  });

  it.each([
    [
      'an IPv6 address in an ipv4 record',
      'ipv4 fd00::2 40000 192.0.2.53 53 192.0.2.53 53 192.0.2.1 40000',
    ],
    [
      'an IPv4 address in an ipv6 record',
      'ipv6 10.244.0.2 40000 2001:db8::53 53 2001:db8::53 53 2001:db8::1 40000',
    ],
    ['an unknown family', 'ipv5 10.244.0.2 40000 192.0.2.53 53 192.0.2.53 53 192.0.2.1 40000'],
  ])('rejects a schema-3 line with %s', (_, tuples) => {
    const line = JSON.stringify({
      type: 'printf',
      data: `insert_failed 3 5036542919870 1 4026532420 0x190 17 ${tuples} nf_hook_slow\n`,
    });
    expect(decode(line)).toMatchObject({ type: 'rejected', code: 'bad_field' });
  });

  it('reads a schema-2 insert_failed line as an example that counts nothing', () => {
    const line = JSON.stringify({
      type: 'printf',
      data: 'insert_failed 2 5036542919870 1 4026532420 0x190 17 10.244.0.2 40000 192.0.2.53 53 192.0.2.53 53 192.0.2.1 40000 nf_hook_slow\n',
    });
    expect(decode(line)).toMatchObject({
      type: 'event',
      event: { kind: 'insert_failed', race: 'snat', count: 0 },
    });
  });
});
