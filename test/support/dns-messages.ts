import { encode as encodeDnsMessage } from 'dns-packet';
import { DNS_MESSAGE_PREFIX_BYTES } from '../../src/decode/dns-question.js';

/** A message prefix as the probe prints it, for tests and fixtures: the query, 128 bytes. */
export function escapedQueryPrefix(name: string, type: 'A' | 'AAAA', id = 0x1234): string {
  const message = encodeDnsMessage({
    type: 'response',
    id,
    flags: 0x8180,
    questions: [{ type, name, class: 'IN' }],
  });
  const prefix = Buffer.alloc(DNS_MESSAGE_PREFIX_BYTES);
  message.copy(prefix, 0, 0, Math.min(message.length, DNS_MESSAGE_PREFIX_BYTES));
  return [...prefix].map((byte) => `\\x${byte.toString(16).padStart(2, '0')}`).join('');
}
