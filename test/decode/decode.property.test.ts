import fc from 'fast-check';

import { createLineDecoder } from '../../src/decode/decode.js';
import { MAX_LINE_CHARS, type DecodedLine } from '../../src/decode/decoded-line.js';
import type { FlowTuple, ProbeEvent } from '../../src/events/types.js';
import {
  controlRecordLine,
  garbageLine,
  hostileLine,
  mutatedEventLine,
  truncatedLine,
  validEventLine,
} from '../support/hostile-lines.js';
import { propertyParameters } from '../support/property.js';
import { canonicalIpv6 } from '../../src/decode/ip-address.js';
import { DECODE_ERROR_CODES } from '../../src/decode/decoded-line.js';

const decode = createLineDecoder('tracepoint/property', (code) => `UNKNOWN_${code}`);

const REJECTION_CODES = new Set<string>(DECODE_ERROR_CODES);
const DOTTED_QUAD = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const MAX_U64 = (1n << 64n) - 1n;

/** A dotted quad, or an IPv6 address in its one canonical text (RFC 5952). */
const isAddress = (ip: string) => DOTTED_QUAD.test(ip) || canonicalIpv6(ip) === ip;

const inRange = (value: number, max: number) =>
  Number.isSafeInteger(value) && value >= 0 && value <= max;
const isCount = (value: number) => Number.isSafeInteger(value) && value >= 0;

function tupleProblems(tuple: FlowTuple, label: string): string[] {
  const problems: string[] = [];
  for (const ip of [tuple.srcIp, tuple.dstIp]) {
    if (!isAddress(ip)) problems.push(`${label} address ${ip}`);
  }
  for (const port of [tuple.srcPort, tuple.dstPort]) {
    if (!inRange(port, 0xffff)) problems.push(`${label} port ${port}`);
  }
  return problems;
}

/** What is wrong with an event the decoder let through; empty when every value is in range. */
function eventProblems(event: ProbeEvent): string[] {
  const problems: string[] = [];
  if (event.monotonicNs < 0n || event.monotonicNs > MAX_U64) problems.push('nsecs');
  if (!inRange(event.cpu, 0xffff)) problems.push(`cpu ${event.cpu}`);
  if (!inRange(event.netnsInode, 0xffffffff)) problems.push(`netns ${event.netnsInode}`);
  switch (event.kind) {
    case 'insert_failed':
    case 'clash_resolved':
      if (!isCount(event.ctStatus)) problems.push(`status ${event.ctStatus}`);
      problems.push(...tupleProblems(event.original, 'original'));
      problems.push(...tupleProblems(event.reply, 'reply'));
      break;
    case 'dns_drop':
      problems.push(...tupleProblems(event.tuple, 'packet'));
      if (event.conntrack) problems.push(...tupleProblems(event.conntrack.original, 'original'));
      break;
    case 'snat_port_alloc':
      if (!isCount(event.latencyNs)) problems.push(`latency ${event.latencyNs}`);
      if (!isCount(event.attempts)) problems.push(`attempts ${event.attempts}`);
      problems.push(...tupleProblems(event.original, 'original'));
      if (!isAddress(event.translatedIp)) problems.push('translated address');
      if (!inRange(event.translatedPort, 0xffff)) problems.push('translated port');
      break;
    case 'dns_nodata':
      problems.push(...tupleProblems(event.tuple, 'nodata'));
      if (event.name.length === 0 || event.name.length > 253) problems.push('name');
      break;
  }
  return problems;
}

/** Throws (failing the property) when the decoded line breaks the decoder's contract. */
function expectWellFormed(line: string, decoded: DecodedLine): void {
  switch (decoded.type) {
    case 'event':
      expect(eventProblems(decoded.event)).toEqual([]);
      return;
    case 'lost':
      expect(isCount(decoded.count)).toBe(true);
      return;
    case 'attached':
      expect(isCount(decoded.probes)).toBe(true);
      return;
    case 'ignored':
      expect(typeof decoded.recordType).toBe('string');
      return;
    case 'rejected':
      expect(REJECTION_CODES.has(decoded.code)).toBe(true);
      // Details go to the log: bounded whatever the line.
      expect(decoded.detail.length).toBeLessThan(600);
      return;
    default:
      throw new Error(`not a decoded line: ${JSON.stringify(decoded)} for ${line}`);
  }
}

describe('the decoder on any input (property)', () => {
  it('turns any line into a well-formed outcome, never throwing', () => {
    fc.assert(
      fc.property(hostileLine, (line) => {
        expectWellFormed(line, decode(line));
      }),
      propertyParameters(2_000),
    );
  });

  it('decodes every valid event line into an event whatever the JSON style', () => {
    fc.assert(
      fc.property(validEventLine, (line) => {
        const decoded = decode(line);
        expect(decoded.type).toBe('event');
        expectWellFormed(line, decoded);
      }),
      propertyParameters(500),
    );
  });

  it('never lets a hostile field through as an out-of-range value', () => {
    fc.assert(
      fc.property(mutatedEventLine, (line) => {
        expectWellFormed(line, decode(line));
      }),
      propertyParameters(1_000),
    );
  });

  it('adds only non-negative safe integers as lost events or attached probes', () => {
    fc.assert(
      fc.property(controlRecordLine, (line) => {
        const decoded = decode(line);
        expectWellFormed(line, decoded);
        if (line.startsWith('{"type": "lost_events"') && decoded.type !== 'lost') {
          expect(decoded).toMatchObject({ type: 'rejected' });
        }
      }),
      propertyParameters(1_000),
    );
  });

  it('rejects a truncated line or bytes that are no record, never taking them for an event', () => {
    fc.assert(
      fc.property(fc.oneof(truncatedLine, garbageLine), (line) => {
        const decoded = decode(line);
        expectWellFormed(line, decoded);
        expect(decoded.type).not.toBe('event');
      }),
      propertyParameters(1_000),
    );
  });

  it('rejects any line past the line limit as too long, without reading it', () => {
    fc.assert(
      fc.property(validEventLine, fc.string({ maxLength: 4 }), (line, tail) => {
        const long = line + ' '.repeat(MAX_LINE_CHARS - line.length + 1) + tail;
        expect(decode(long)).toMatchObject({ type: 'rejected', code: 'line_too_long' });
      }),
      propertyParameters(20),
    );
  });
});
