import fc from 'fast-check';

import {
  bytesOfEscapedHex,
  dnsQuestionOf,
  DNS_MESSAGE_PREFIX_BYTES,
} from '../../src/decode/dns-question.js';
import { escapedQueryPrefix } from '../support/dns-messages.js';
import { propertyParameters } from '../support/property.js';

const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?$/);
const name = fc.array(label, { minLength: 1, maxLength: 5 }).map((labels) => labels.join('.'));

describe('the question of a DNS message prefix', () => {
  it('reads the name and type of any query that fits in the printed bytes (property)', () => {
    fc.assert(
      fc.property(name, fc.constantFrom('A' as const, 'AAAA' as const), (asked, type) => {
        const bytes = bytesOfEscapedHex(escapedQueryPrefix(asked, type));
        expect(bytes).toHaveLength(DNS_MESSAGE_PREFIX_BYTES);
        expect(dnsQuestionOf(bytes!)).toEqual({ name: asked, type });
      }),
      propertyParameters(300),
    );
  });

  it('gives no question, never throwing, for any bytes that are not one (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: DNS_MESSAGE_PREFIX_BYTES }), (bytes) => {
        const question = dnsQuestionOf(bytes);
        if (question !== undefined) expect(typeof question.name).toBe('string');
      }),
      propertyParameters(2_000),
    );
  });

  it('gives no question when the name runs past the printed bytes', () => {
    const long = `${'a'.repeat(60)}.${'b'.repeat(60)}.example`;
    expect(dnsQuestionOf(bytesOfEscapedHex(escapedQueryPrefix(long, 'A'))!)).toBeUndefined();
  });

  it('gives no question for a compression pointer that points at itself', () => {
    const bytes = new Uint8Array(20);
    bytes.set([0xc0, 12], 12);
    expect(dnsQuestionOf(bytes)).toBeUndefined();
  });

  it('reads only escaped hex as bpftrace prints a buf() with %rx', () => {
    expect(bytesOfEscapedHex('\\x07\\x65')).toEqual(new Uint8Array([7, 0x65]));
    expect(bytesOfEscapedHex('\\x07e')).toBeUndefined();
    expect(bytesOfEscapedHex('\\xzz\\x00')).toBeUndefined();
    expect(bytesOfEscapedHex('')).toBeUndefined();
    expect(bytesOfEscapedHex('\\x00'.repeat(DNS_MESSAGE_PREFIX_BYTES + 1))).toBeUndefined();
  });
});
