import fc from 'fast-check';
import { canonicalIp, ipFamilyOf } from '../../src/shared/canonical-ip.js';
import { propertyParameters } from '../support/property.js';

/** Eight 16-bit groups, biased towards zeros so that runs to compress are common. */
const groups = fc.array(
  fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff })),
  {
    minLength: 8,
    maxLength: 8,
  },
);

/** Any of the spellings RFC 4291 allows for the same groups. */
function spelling(
  values: readonly number[],
  padding: readonly number[],
  upper: boolean,
  compressAt: number,
): string {
  const written = values.map((value, i) => {
    const hex = value
      .toString(16)
      .padStart(Math.min(4, value.toString(16).length + (padding[i] ?? 0)), '0');
    return upper ? hex.toUpperCase() : hex;
  });
  // Compress the zero run starting at `compressAt`, if there is one there.
  let end = compressAt;
  while (end < 8 && values[end] === 0) end += 1;
  if (end - compressAt < 1) return written.join(':');
  return `${written.slice(0, compressAt).join(':')}::${written.slice(end).join(':')}`;
}

/** WHATWG URL serialises IPv6 hosts by RFC 5952's compression rule: an independent reference. */
function reference(values: readonly number[]): string {
  const text = values.map((value) => value.toString(16)).join(':');
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

const isMapped = (values: readonly number[]): boolean =>
  values.slice(0, 5).every((g) => g === 0) && values[5] === 0xffff;

describe('canonicalIp', () => {
  it('gives every spelling of one IPv6 address the RFC 5952 form a URL serialiser gives', () => {
    fc.assert(
      fc.property(
        groups.filter((values) => !isMapped(values)),
        fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 8, maxLength: 8 }),
        fc.boolean(),
        fc.integer({ min: 0, max: 7 }),
        (values, padding, upper, compressAt) => {
          const text = spelling(values, padding, upper, compressAt);
          expect(canonicalIp(text)).toBe(reference(values));
        },
      ),
      propertyParameters(300),
    );
  });

  it('is idempotent and keeps the family of any string', () => {
    fc.assert(
      fc.property(fc.oneof(fc.ipV6(), fc.ipV4(), fc.ipV4Extended(), fc.string()), (text) => {
        const once = canonicalIp(text);
        expect(canonicalIp(once)).toBe(once);
        expect(ipFamilyOf(once)).toBe(ipFamilyOf(text));
      }),
      propertyParameters(300),
    );
  });

  it('writes IPv4-mapped addresses in dotted notation, however they were spelled', () => {
    expect(canonicalIp('::FFFF:0a00:0001')).toBe('::ffff:10.0.0.1');
    expect(canonicalIp('0:0:0:0:0:ffff:10.0.0.1')).toBe('::ffff:10.0.0.1');
  });

  it('matches the examples of RFC 5952', () => {
    expect(canonicalIp('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1');
    expect(canonicalIp('2001:0db8:0:0:0:0:2:1')).toBe('2001:db8::2:1');
    expect(canonicalIp('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1');
    expect(canonicalIp('2001:DB8::1')).toBe('2001:db8::1');
    expect(canonicalIp('fd00:0:0::1')).toBe('fd00::1');
    expect(canonicalIp('::')).toBe('::');
  });

  it('keeps a zone, leaves IPv4 and text that is no address as given', () => {
    expect(canonicalIp('FE80:0::1%eth0')).toBe('fe80::1%eth0');
    expect(canonicalIp('10.244.0.2')).toBe('10.244.0.2');
    expect(canonicalIp('not-an-ip')).toBe('not-an-ip');
    expect(canonicalIp('')).toBe('');
  });
});
