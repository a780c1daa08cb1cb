import { readFileSync } from 'node:fs';
import { clientIpOf } from '../../src/events/client-ip.js';
import { createLineDecoder } from '../../src/decode/decode.js';
import { MAX_LINE_CHARS, type DecodedLine } from '../../src/decode/decoded-line.js';
import { escapedQueryPrefix } from '../support/dns-messages.js';

const reasonNames: Record<number, string> = { 3: 'NO_SOCKET', 12: 'NETFILTER_DROP' };
const decode = createLineDecoder(
  'tracepoint/test',
  (code) => reasonNames[code] ?? `UNKNOWN_${code}`,
);

function printf(data: string): string {
  return JSON.stringify({ type: 'printf', data: `${data}\n` })
    .replace('","', '", "')
    .replace('":"', '": "')
    .replace('":"', '": "');
}

const snatLine =
  'insert_failed 1 5036542919870 1 4026532420 190 17 10.244.0.2 40000 192.0.2.53 53 192.0.2.53 53 192.0.2.1 40000 nf_hook_slow';

describe('decoding bpftrace output lines', () => {
  it('reads the question of a dns_nodata line with a DNS codec', () => {
    const message = escapedQueryPrefix('www.example.test.corp.test', 'A');
    const decoded = decode(
      printf(`dns_nodata 1 5036542919870 1 4026532420 10.244.0.2 10.96.0.10 ${message}`),
    );
    expect(decoded).toEqual({
      type: 'event',
      event: {
        kind: 'dns_nodata',
        probe: 'tracepoint/test',
        monotonicNs: 5036542919870n,
        cpu: 1,
        netnsInode: 4026532420,
        protocol: 'udp',
        tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 },
        name: 'www.example.test.corp.test',
        qtype: 'A',
      },
    });
  });

  it('reads the family and addresses of a dns_nodata 2 line, an IPv6 one in canonical text', () => {
    const message = escapedQueryPrefix('www.example.test.corp.test', 'AAAA');
    const v4 = decode(
      printf(`dns_nodata 2 5036542919870 1 4026532420 ipv4 10.244.0.2 10.96.0.10 ${message}`),
    );
    expect(v4).toMatchObject({
      type: 'event',
      event: {
        kind: 'dns_nodata',
        tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 },
        name: 'www.example.test.corp.test',
        qtype: 'AAAA',
      },
    });
    const v6 = decode(
      printf(
        `dns_nodata 2 5036542919870 1 4026532420 ipv6 fd00:10:244:0:0:0:0:2 fd00:10:96::a ${message}`,
      ),
    );
    expect(v6).toEqual({
      type: 'event',
      event: {
        kind: 'dns_nodata',
        probe: 'tracepoint/test',
        monotonicNs: 5036542919870n,
        cpu: 1,
        netnsInode: 4026532420,
        protocol: 'udp',
        tuple: { srcIp: 'fd00:10:244::2', srcPort: 0, dstIp: 'fd00:10:96::a', dstPort: 53 },
        name: 'www.example.test.corp.test',
        qtype: 'AAAA',
      },
    });
    // The family says how to read the addresses: an IPv4 one under ipv6 is a bad field.
    for (const line of [
      `dns_nodata 2 1 0 4026532420 ipv6 10.244.0.2 10.96.0.10 ${message}`,
      `dns_nodata 2 1 0 4026532420 ipv4 fd00:10:244::2 fd00:10:96::a ${message}`,
      `dns_nodata 2 1 0 4026532420 inet fd00:10:244::2 fd00:10:96::a ${message}`,
    ])
      expect(decode(printf(line))).toMatchObject({ type: 'rejected', code: 'bad_field' });
  });

  it('counts a dns_nodata line whose message holds no question as a bad DNS message', () => {
    const decoded = decode(
      printf(`dns_nodata 1 1 0 4026532420 10.244.0.2 10.96.0.10 ${'\\xc0'.repeat(128)}`),
    );
    expect(decoded).toMatchObject({ type: 'rejected', code: 'bad_dns_message' });
    const bad = decode(printf('dns_nodata 1 1 0 4026532420 10.244.0.2 10.96.0.10 not-hex'));
    expect(bad).toMatchObject({ type: 'rejected', code: 'bad_dns_message' });
  });

  it('turns an insert_failed line into an event classified as an SNAT race', () => {
    const decoded = decode(printf(snatLine));
    expect(decoded).toEqual({
      type: 'event',
      event: {
        kind: 'insert_failed',
        probe: 'tracepoint/test',
        monotonicNs: 5036542919870n,
        cpu: 1,
        netnsInode: 4026532420,
        ctStatus: 0x190,
        protocol: 'udp',
        original: { srcIp: '10.244.0.2', srcPort: 40000, dstIp: '192.0.2.53', dstPort: 53 },
        reply: { srcIp: '192.0.2.53', srcPort: 53, dstIp: '192.0.2.1', dstPort: 40000 },
        race: 'snat',
      },
    });
  });

  it('decodes the same line whether or not it takes the fast path', () => {
    const compact = JSON.stringify({ type: 'printf', data: `${snatLine}\n` });
    expect(compact.startsWith('{"type":"printf"')).toBe(true);
    expect(decode(compact)).toEqual(decode(printf(snatLine)));
  });

  it('classifies a clash_resolved line with its own kind', () => {
    const decoded = decode(
      printf(
        'clash_resolved 1 77 0 4026531840 1a8 17 10.244.0.2 41000 10.96.0.10 53 192.0.2.54 53 10.244.0.2 41000 nf_ct_resolve_clash',
      ),
    );
    expect(decoded.type === 'event' && decoded.event.kind).toBe('clash_resolved');
    expect(decoded.type === 'event' && 'race' in decoded.event && decoded.event.race).toBe('dnat');
  });

  it('names the drop reason of a dns_drop line and tells a query from a response', () => {
    const query = decode(
      printf('dns_drop 1 10 0 4026531840 12 10.244.0.2 41234 192.0.2.99 53 nft_do_chain'),
    );
    const response = decode(
      printf('dns_drop 1 11 1 4026531840 3 192.0.2.53 53 10.244.0.2 41234 nf_hook_slow'),
    );
    expect(query).toMatchObject({
      type: 'event',
      event: {
        kind: 'dns_drop',
        reason: 'NETFILTER_DROP',
        direction: 'query',
        location: 'nft_do_chain',
      },
    });
    expect(response).toMatchObject({
      type: 'event',
      event: { reason: 'NO_SOCKET', direction: 'response' },
    });
  });

  it('names a reason code the kernel table lacks instead of rejecting the event', () => {
    const decoded = decode(printf('dns_drop 1 10 0 1 999 10.244.0.2 41234 192.0.2.99 53 -'));
    expect(decoded).toMatchObject({ type: 'event', event: { reason: 'UNKNOWN_999' } });
  });

  it('reports attachment and lost events as control records', () => {
    expect(decode('{"type": "attached_probes", "data": {"probes": 2}}')).toEqual({
      type: 'attached',
      probes: 2,
    });
    expect(decode('{"type": "lost_events", "data": {"events": 17}}')).toEqual({
      type: 'lost',
      count: 17,
    });
    expect(decode('{"type": "time", "data": "12:00:00\\n"}')).toEqual({
      type: 'ignored',
      recordType: 'time',
    });
  });

  it.each([
    ['-5', '-5'],
    ['1.5', '1.5'],
    ['1e999', 'Infinity'],
    ['9007199254740992', '9007199254740992'],
    ['"12"', '"12"'],
    ['null', 'null'],
  ])(
    'rejects a lost_events count of %s as bad_count rather than add it to a counter',
    (count, shown) => {
      expect(decode(`{"type": "lost_events", "data": {"events": ${count}}}`)).toEqual({
        type: 'rejected',
        code: 'bad_count',
        detail: `lost_events count is not a count: ${shown}`,
      });
    },
  );

  it('takes a lost_events count of 0 or 2^53 - 1, and rejects one that is missing', () => {
    expect(decode('{"type": "lost_events", "data": {"events": 0}}')).toEqual({
      type: 'lost',
      count: 0,
    });
    expect(decode('{"type": "lost_events", "data": {"events": 9007199254740991}}')).toEqual({
      type: 'lost',
      count: Number.MAX_SAFE_INTEGER,
    });
    expect(decode('{"type": "lost_events", "data": {}}')).toMatchObject({
      code: 'bad_count',
      detail: 'lost_events count is not a count: no events',
    });
    expect(decode('{"type": "lost_events", "data": 7}')).toMatchObject({ code: 'bad_count' });
  });

  it('rejects an attached_probes count that is no count', () => {
    expect(decode('{"type": "attached_probes", "data": {"probes": -1}}')).toMatchObject({
      type: 'rejected',
      code: 'bad_count',
    });
  });

  it('rejects a line past the line limit as too long without parsing it', () => {
    const line = printf(
      `dns_drop 1 10 0 1 12 10.244.0.2 41234 192.0.2.99 53 ${'x'.repeat(MAX_LINE_CHARS)}`,
    );
    const decoded = decode(line);
    expect(decoded).toMatchObject({ type: 'rejected', code: 'line_too_long' });
    expect(decoded.type === 'rejected' && decoded.detail.length).toBeLessThan(200);
  });

  it('rejects every malformed or truncated line of the fixture with a stable code, never throwing', () => {
    const lines = readFileSync(
      new URL('../fixtures/bpftrace/malformed.jsonl', import.meta.url),
      'utf8',
    )
      .split('\n')
      .slice(0, -1);
    const outcomes = lines.map((line) => {
      const decoded: DecodedLine = decode(line);
      return decoded.type === 'rejected' ? decoded.code : decoded.type;
    });
    expect(outcomes).toEqual([
      'event',
      'not_json',
      'not_json',
      'not_json',
      'not_an_object',
      'unsupported_version',
      'bad_field',
      'bad_field',
      'bad_field_count',
      'unknown_record',
      'bad_field',
      'bad_count',
      'not_json',
      'event',
    ]);
  });
});

describe('decoding kprobe-mode records', () => {
  it('reads a SNAT port allocation with its latency, attempts and translated source', () => {
    const decoded = decode(
      printf(
        'snat_port_alloc 1 351220375503 1 4026531840 18234 3 17 10.244.0.3 40000 192.0.2.53 53 192.0.2.1 40002',
      ),
    );
    expect(decoded).toMatchObject({
      type: 'event',
      event: {
        kind: 'snat_port_alloc',
        latencyNs: 18234,
        attempts: 3,
        original: { srcIp: '10.244.0.3', srcPort: 40000 },
        translatedIp: '192.0.2.1',
        translatedPort: 40002,
      },
    });
  });
});

describe('decoding schema-2 DNS drops', () => {
  it('keeps the conntrack entry and recognises an insertion-race loser', () => {
    const decoded = decode(
      printf(
        'dns_drop 2 10 1 4026532420 12 192.0.2.1 40000 192.0.2.53 53 nf_hook_slow 0x190 10.244.0.2 40000 10.96.0.10 53',
      ),
    );
    expect(decoded).toMatchObject({
      type: 'event',
      event: {
        tuple: { srcIp: '192.0.2.1' },
        conntrack: {
          status: 0x190,
          original: { srcIp: '10.244.0.2', srcPort: 40000, dstIp: '10.96.0.10', dstPort: 53 },
          lostInsertRace: true,
        },
      },
    });
    expect(decoded.type === 'event' && clientIpOf(decoded.event)).toBe('10.244.0.2');
  });

  it('does not take a firewall drop of a NATed query for a race loser', () => {
    const decoded = decode(
      printf(
        'dns_drop 2 10 1 4026532420 12 10.244.0.2 40000 192.0.2.53 53 nft_do_chain 0x100 10.244.0.2 40000 10.96.0.10 53',
      ),
    );
    expect(decoded).toMatchObject({ event: { conntrack: { lostInsertRace: false } } });
  });

  it('leaves out the conntrack entry when the packet had none', () => {
    const decoded = decode(
      printf(
        'dns_drop 2 10 1 4026532420 3 10.244.0.2 40000 192.0.2.99 53 __udp4_lib_rcv 0x0 0.0.0.0 0 0.0.0.0 0',
      ),
    );
    expect(decoded.type === 'event' && 'conntrack' in decoded.event).toBe(false);
  });
});

describe('reading the fields of an event line', () => {
  const withSource = (ip: string) =>
    printf(`dns_drop 1 10 0 4026531840 12 ${ip} 41234 192.0.2.99 53 nft_do_chain`);
  const withStatus = (status: string) =>
    printf(
      `insert_failed 1 5036542919870 1 4026532420 ${status} 17 10.244.0.2 40000 192.0.2.53 53 192.0.2.53 53 192.0.2.1 40000 nf_hook_slow`,
    );
  const withNsecs = (nsecs: string) =>
    printf(`dns_drop 1 ${nsecs} 0 4026531840 12 10.244.0.2 41234 192.0.2.99 53 nft_do_chain`);

  it.each(['0.0.0.0', '255.255.255.255', '10.244.0.2', '192.0.2.199', '1.20.249.250'])(
    'accepts the dotted quad %s',
    (ip) => {
      expect(decode(withSource(ip))).toMatchObject({
        type: 'event',
        event: { tuple: { srcIp: ip } },
      });
    },
  );

  it.each([
    '256.0.0.1',
    '10.244.0.01',
    '00.1.2.3',
    '10.244.0',
    '10.244.0.2.5',
    '10.244..2',
    '10.244.0.2.',
    '.10.244.0',
    '10.244.0.1000',
    '10.244.0.-1',
    '10.244.0.a',
    '١٠.244.0.2',
  ])('rejects %s as an address, naming the field', (ip) => {
    expect(decode(withSource(ip))).toEqual({
      type: 'rejected',
      code: 'bad_field',
      detail: `dns_drop: packet source is not an IPv4 address: "${ip}"`,
    });
  });

  it.each([
    ['190', 0x190],
    ['0x190', 0x190],
    ['1A8', 0x1a8],
    ['0xffffffff', 0xffffffff],
    ['0', 0],
  ])('reads the status %s as hex', (text, value) => {
    expect(decode(withStatus(text))).toMatchObject({ event: { ctStatus: value } });
  });

  it.each(['0X190', '0x', 'x190', '19g', '-190'])('rejects the status %s', (text) => {
    expect(decode(withStatus(text))).toEqual({
      type: 'rejected',
      code: 'bad_field',
      detail: `insert_failed: status is not hex: "${text}"`,
    });
  });

  it('keeps every digit of a timestamp past 2^53 nanoseconds', () => {
    expect(decode(withNsecs('18446744073709551615'))).toMatchObject({
      event: { monotonicNs: 18446744073709551615n },
    });
  });

  it.each(['1e9', '+5', '12.5', '0x10'])('rejects the timestamp %s', (text) => {
    expect(decode(withNsecs(text))).toEqual({
      type: 'rejected',
      code: 'bad_field',
      detail: `dns_drop: nsecs is not an unsigned integer: "${text}"`,
    });
  });

  it.each(['18446744073709551616', '9'.repeat(21), '9'.repeat(5000)])(
    'rejects a timestamp past 2^64 - 1 (%#)',
    (text) => {
      expect(decode(withNsecs(text))).toMatchObject({
        type: 'rejected',
        code: 'bad_field',
        detail: expect.stringContaining('dns_drop: nsecs out of range (u64): ') as string,
      });
    },
  );

  it('rejects a status past 32 bits, which a double could not even hold exactly', () => {
    expect(decode(withStatus('20000000000000'))).toEqual({
      type: 'rejected',
      code: 'bad_field',
      detail: 'insert_failed: status out of range: 20000000000000',
    });
  });

  it('rejects a port past 65535 and reads leading zeros of a number as the number', () => {
    expect(
      decode(printf('dns_drop 1 10 0 4026531840 12 10.244.0.2 65536 192.0.2.99 53 -')),
    ).toEqual({
      type: 'rejected',
      code: 'bad_field',
      detail: 'dns_drop: packet source port out of range: 65536',
    });
    expect(
      decode(printf('dns_drop 1 10 0 4026531840 003 10.244.0.2 065535 192.0.2.99 53 -')),
    ).toMatchObject({ event: { reason: 'NO_SOCKET', tuple: { srcPort: 65535 } } });
  });
});

describe('decoding DNS drops from a kernel without drop reasons', () => {
  // The records of dns-drops-no-reason.bt: `-` in the reason field.
  const noReasonLine = (location: string, status = '0x0'): DecodedLine =>
    decode(
      printf(
        `dns_drop 2 10 1 4026532420 - 10.244.0.2 40000 192.0.2.53 53 ${location} ${status} 10.244.0.2 40000 192.0.2.53 53`,
      ),
    );

  it.each([
    ['nf_hook_slow', 'NETFILTER_DROP'],
    ['nft_do_chain', 'NETFILTER_DROP'],
    ['__udp4_lib_rcv', 'NO_SOCKET'],
    ['__udp_queue_rcv_skb', 'SOCKET_RCVBUFF'],
    ['__udp6_lib_rcv', 'NO_SOCKET'],
    ['__udpv6_queue_rcv_skb', 'SOCKET_RCVBUFF'],
    ['ip_rcv_finish_core', 'NOT_SPECIFIED'],
  ])('names a drop freed in %s %s', (location, reason) => {
    expect(noReasonLine(location)).toMatchObject({
      type: 'event',
      event: { kind: 'dns_drop', reason, location, direction: 'query' },
    });
  });

  it('still recognises an insertion-race loser dropped in nf_hook_slow', () => {
    expect(noReasonLine('nf_hook_slow', '0x190')).toMatchObject({
      event: { reason: 'NETFILTER_DROP', conntrack: { lostInsertRace: true } },
    });
  });

  it('rejects any other text in the reason field', () => {
    expect(
      decode(
        printf(
          'dns_drop 2 10 1 4026532420 x 10.244.0.2 40000 192.0.2.53 53 nf_hook_slow 0x0 0.0.0.0 0 0.0.0.0 0',
        ),
      ),
    ).toMatchObject({ type: 'rejected', code: 'bad_field' });
  });
});
