import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { parseConntrackList } from '../../../src/sources/conntrack-table/conntrack-list.js';

/** Real `conntrack -L -p udp --orig-port-dst 53` output (see test/attribute/unanswered-backends.test.ts). */
const TABLE = readFileSync(
  new URL('../../fixtures/conntrack/list-udp-53-backend-stopped.txt', import.meta.url),
  'utf8',
);

describe('parseConntrackList', () => {
  it('reads both tuples of each real entry and whether anything came back', () => {
    const { entries, malformed } = parseConntrackList(TABLE);
    expect(malformed).toBe(0);
    expect(entries.length).toBe(TABLE.trim().split('\n').length);
    const unreplied = entries.find((entry) => !entry.replied);
    expect(unreplied).toMatchObject({
      original: { srcIp: '10.244.0.2', dstIp: '10.96.0.10', dstPort: 53 },
      reply: { srcIp: '192.0.2.53', srcPort: 53, dstIp: '192.0.2.1' },
    });
    expect(unreplied!.reply.dstPort).toBe(unreplied!.original.srcPort);
    expect(entries.some((entry) => entry.replied && entry.reply.srcIp === '192.0.2.54')).toBe(true);
  });

  it('writes IPv6 addresses in canonical form', () => {
    const { entries } = parseConntrackList(
      'udp      17 29 src=fd00:10:244:0:0:0:0:2 dst=fd00:10:96::a sport=40000 dport=53 [UNREPLIED] src=FD00:10:244::A dst=fd00:10:244::2 sport=53 dport=40000 mark=0 use=1\n',
    );
    expect(entries[0]).toMatchObject({
      original: { srcIp: 'fd00:10:244::2' },
      reply: { srcIp: 'fd00:10:244::a' },
      replied: false,
    });
  });

  it('counts and skips lines that are not a UDP entry, never throwing, and ignores blank ones', () => {
    const [first = ''] = TABLE.split('\n');
    const bad = [
      'garbage',
      'conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.',
      'tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=1 dport=2 src=10.0.0.2 dst=10.0.0.1 sport=2 dport=1 [ASSURED] mark=0 use=1',
      first.replace(/ src=192\.0\.2\.5[34].*$/, ''),
      first.replace('sport=', 'sport=x'),
      first.replace('dport=53', 'dport=70000'),
      first.replace('src=10.244.0.2', 'src=10.244.0'),
      `${first} src=10.0.0.9`,
      '\u0000\u0001',
    ];
    const { entries, malformed } = parseConntrackList(['', ...bad, '', first, '  '].join('\n'));
    expect(malformed).toBe(bad.length);
    expect(entries).toHaveLength(1);
  });
});
