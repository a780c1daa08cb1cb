import fc from 'fast-check';

import { canonicalIpv6, ipv6FromHalves } from '../../src/decode/ip-address.js';
import { ipv6 } from '../support/hostile-lines.js';
import { propertyParameters } from '../support/property.js';

/** Node's own canonical text (WHATWG URL host serialiser), which never prints a dotted quad. */
function nodeCanonical(text: string): string {
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

const isMapped = (canonical: string) => canonical.startsWith('::ffff:') && canonical.includes('.');

describe('IPv6 text', () => {
  it.each([
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // one zero group stays
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // the longest run
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // the first of equal runs
    ['0:0:0:0:0:0:0:0', '::'],
    ['::1', '::1'],
    ['fd00:10:244::', 'fd00:10:244::'],
    ['::ffff:c000:0201', '::ffff:192.0.2.1'], // IPv4-mapped, as inet_ntop prints it
    ['::FFFF:192.0.2.1', '::ffff:192.0.2.1'],
  ])('writes %s as %s (RFC 5952)', (text, canonical) => {
    expect(canonicalIpv6(text)).toBe(canonical);
  });

  it.each([
    '',
    ':',
    ':::',
    '1::2::3',
    '1:2:3:4:5:6:7:8:9',
    '1:2:3:4:5:6:7',
    '1:2:3:4:5:6:7::8',
    'fd00::10000',
    'fd00::g',
    ':1::',
    '1::2:',
    '::ffff:1.2.3.256',
    '::ffff:1.2.3.04',
    '1.2.3.4',
    'x'.repeat(400),
  ])('refuses %j', (text) => {
    expect(canonicalIpv6(text)).toBeUndefined();
  });

  it('agrees with Node on every address outside ::ffff:0:0/96, in any spelling (property)', () => {
    fc.assert(
      fc.property(ipv6, (text) => {
        const canonical = canonicalIpv6(text);
        expect(canonical).toBeDefined();
        if (canonical === undefined || isMapped(canonical)) return;
        expect(canonical).toBe(nodeCanonical(text));
      }),
      propertyParameters(2_000),
    );
  });

  it('reads an address keyed as two u64 halves of little-endian bytes', () => {
    // fd00:10:244::2: bytes fd 00 00 10 02 44 00 00 | 00 00 00 00 00 00 00 02.
    expect(ipv6FromHalves('74775649059069', '144115188075855872')).toBe('fd00:10:244::2');
    expect(ipv6FromHalves('3087860000', '72057594037927936')).toBe('2001:db8::1');
    expect(ipv6FromHalves('18446744073709551615', '0')).toBe('ffff:ffff:ffff:ffff::');
  });

  it("reads a half bpftrace printed as a negative (signed) 64-bit integer as its two's complement", () => {
    // As bpftrace 0.17 printed 2001:db8::99 in a map key (a half at or above 2^63).
    expect(ipv6FromHalves('3087860000', '-7421932185906577408')).toBe('2001:db8::99');
    expect(ipv6FromHalves('-1', '-9223372036854775808')).toBe('ffff:ffff:ffff:ffff::80');
  });

  it.each([
    ['18446744073709551616', '0'],
    ['-9223372036854775809', '0'],
    ['--1', '0'],
    ['1', ''],
    ['1e3', '0'],
  ])('refuses the halves %j, %j', (first, second) => {
    expect(ipv6FromHalves(first, second)).toBeUndefined();
  });
});
