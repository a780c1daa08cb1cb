import { classifyRace } from '../events/classify-race.js';
import type {
  DnsDropEvent,
  DnsNoDataEvent,
  FlowTuple,
  ProbeEvent,
  TransportProtocol,
} from '../events/types.js';
import {
  MAX_LINE_CHARS,
  type CountEntry,
  type DecodedLine,
  type DecodeErrorCode,
  type LineDecoder,
} from './decoded-line.js';
import { dropReasonFromLocation } from './drop-location.js';
import { canonicalIpv6 } from './ip-address.js';
import { bytesOfEscapedHex, dnsQuestionOf } from './dns-question.js';

/** Names the numeric drop reasons of the running kernel (read from the tracepoint format). */
export type DropReasonNamer = (code: number) => string;

// bpftrace 0.17 prints printf records exactly like this; matching the prefix lets the hot
// path skip JSON.parse. Anything unusual (escapes, other spacing) falls back to JSON.parse.
const PRINTF_PREFIX = '{"type": "printf", "data": "';
const PRINTF_SUFFIX = '\\n"}';

const CONNTRACK_FIELD_COUNT = 16;
// insert_failed 3 and clash_resolved 2: the address family (`ipv4` / `ipv6`) after the protocol.
const CONNTRACK_FAMILY_FIELD_COUNT = 17;
// Schema 1 had no conntrack fields; recordings of it still decode.
const DNS_V1_FIELD_COUNT = 11;
const DNS_V2_FIELD_COUNT = 16;
// Schema 3 has the fields of schema 2; it is an example of drops the probe counts in the kernel.
const DNS_V3_FIELD_COUNT = 16;
// Schema 4: schema 3 with the address family (`ipv4` / `ipv6`) after the reason.
const DNS_V4_FIELD_COUNT = 17;
const MAP_CLEARED_FIELD_COUNT = 3;
const DNS_NODATA_FIELD_COUNT = 8;
// dns_nodata 2: the address family (`ipv4` / `ipv6`) before the addresses.
const DNS_NODATA_FAMILY_FIELD_COUNT = 9;
// IPS_CONFIRMED clear, IPS_SRC_NAT_DONE and IPS_DST_NAT_DONE set: the entry reached the
// confirm hook and lost (see probes/tracepoint/conntrack-insert-failed.bt).
const IPS_CONFIRMED = 0x8;
const IPS_NAT_DONE = 0x180;
const SNAT_PORT_ALLOC_FIELD_COUNT = 14;
// snat_port_alloc 2: the address family after the protocol.
const SNAT_PORT_ALLOC_FAMILY_FIELD_COUNT = 15;
/** The reason field of a dns_drop record from a kernel without drop reasons. */
const NO_REASON = '-';

class FieldError extends Error {}

function rejected(code: DecodeErrorCode, detail: string): DecodedLine {
  return { type: 'rejected', code, detail };
}

const DIGIT_0 = 48;
const DIGIT_9 = 57;
const DOT = 46;
const LOWER_X = 0x78;
const LOWER_A = 0x61;
const LOWER_F = 0x66;
// Up to 15 decimal digits the running value stays an exact integer in a double.
const EXACT_DECIMAL_DIGITS = 15;
// 13 hex digits are 52 bits: still exact.
const EXACT_HEX_DIGITS = 13;

/** The value of a non-empty run of ASCII digits, or -1: on the hot path, a regex costs more. */
function decimalValue(text: string): number {
  const length = text.length;
  if (length === 0) return -1;
  let value = 0;
  for (let i = 0; i < length; i += 1) {
    const digit = text.charCodeAt(i) - DIGIT_0;
    if (digit < 0 || digit > 9) return -1;
    value = value * 10 + digit;
  }
  return length > EXACT_DECIMAL_DIGITS ? Number(text) : value;
}

/** The value of hex digits with an optional 0x prefix, or -1. */
function hexValue(text: string): number {
  // Only a lower-case 0x, as bpftrace prints it.
  const start =
    text.length > 2 && text.charCodeAt(0) === DIGIT_0 && text.charCodeAt(1) === LOWER_X ? 2 : 0;
  const length = text.length;
  if (length === start) return -1;
  let value = 0;
  for (let i = start; i < length; i += 1) {
    const code = text.charCodeAt(i);
    let digit: number;
    if (code >= DIGIT_0 && code <= DIGIT_9) digit = code - DIGIT_0;
    else {
      // Setting bit 5 folds A–F onto a–f.
      const lower = code | 0x20;
      if (lower < LOWER_A || lower > LOWER_F) return -1;
      digit = lower - LOWER_A + 10;
    }
    value = value * 16 + digit;
  }
  return length - start > EXACT_HEX_DIGITS ? Number.parseInt(text, 16) : value;
}

/** Dotted quad, each part 0–255 without leading zeros. */
function isIpv4(text: string): boolean {
  const length = text.length;
  let parts = 0;
  let i = 0;
  while (i < length) {
    const start = i;
    let value = 0;
    while (i < length) {
      const digit = text.charCodeAt(i) - DIGIT_0;
      if (digit < 0 || digit > 9) break;
      value = value * 10 + digit;
      i += 1;
    }
    const digits = i - start;
    if (digits === 0 || digits > 3 || value > 255) return false;
    if (digits > 1 && text.charCodeAt(start) === DIGIT_0) return false;
    parts += 1;
    if (i === length) break;
    if (text.charCodeAt(i) !== DOT || parts === 4) return false;
    i += 1;
    if (i === length) return false;
  }
  return parts === 4;
}

function unsigned(fields: string[], index: number, name: string, max: number): number {
  const text = fields[index] ?? '';
  const value = decimalValue(text);
  if (value < 0) throw new FieldError(`${name} is not an unsigned integer: "${truncate(text)}"`);
  if (value > max) throw new FieldError(`${name} out of range: ${truncate(text)}`);
  return value;
}

function port(fields: string[], index: number, name: string): number {
  return unsigned(fields, index, name, 0xffff);
}

function ipv4(fields: string[], index: number, name: string): string {
  const text = fields[index] ?? '';
  if (!isIpv4(text)) throw new FieldError(`${name} is not an IPv4 address: "${truncate(text)}"`);
  return text;
}

type Family = 'ipv4' | 'ipv6';

function family(fields: string[], index: number): Family {
  const text = fields[index] ?? '';
  if (text === 'ipv4' || text === 'ipv6') return text;
  throw new FieldError(`family is neither ipv4 nor ipv6: "${truncate(text)}"`);
}

/** An address of the record's family; IPv6 in its canonical text (RFC 5952). */
function address(fields: string[], index: number, name: string, of: Family): string {
  if (of === 'ipv4') return ipv4(fields, index, name);
  const text = fields[index] ?? '';
  const canonical = canonicalIpv6(text);
  if (canonical === undefined) {
    throw new FieldError(`${name} is not an IPv6 address: "${truncate(text)}"`);
  }
  return canonical;
}

// bpftrace's nsecs is a u64.
const MAX_NSECS = (1n << 64n) - 1n;
const MAX_NSECS_DIGITS = MAX_NSECS.toString().length;

function nanoseconds(fields: string[], index: number): bigint {
  const text = fields[index] ?? '';
  if (decimalValue(text) < 0) {
    throw new FieldError(`nsecs is not an unsigned integer: "${truncate(text)}"`);
  }
  // The digit count first: BigInt() of a megabyte of digits is not free.
  const value = text.length > MAX_NSECS_DIGITS ? undefined : BigInt(text);
  if (value === undefined || value > MAX_NSECS) {
    throw new FieldError(`nsecs out of range (u64): ${truncate(text)}`);
  }
  return value;
}

// The IPS_* bits all fit in 32 bits; more hex digits are garbage, and past 13 of them a
// double would not even hold the value exactly.
const MAX_STATUS = 0xffffffff;

function status(text: string): number {
  const value = hexValue(text);
  if (value < 0) throw new FieldError(`status is not hex: "${truncate(text)}"`);
  if (value > MAX_STATUS) throw new FieldError(`status out of range: ${truncate(text)}`);
  return value;
}

function transport(protocolNumber: number): TransportProtocol {
  switch (protocolNumber) {
    case 17:
      return 'udp';
    case 6:
      return 'tcp';
    case 1:
      return 'icmp';
    default:
      return 'other';
  }
}

function tuple(fields: string[], first: number, label: string, of: Family = 'ipv4'): FlowTuple {
  return {
    srcIp: address(fields, first, `${label} source`, of),
    srcPort: port(fields, first + 1, `${label} source port`),
    dstIp: address(fields, first + 2, `${label} destination`, of),
    dstPort: port(fields, first + 3, `${label} destination port`),
  };
}

function conntrackEvent(
  kind: 'insert_failed' | 'clash_resolved',
  fields: string[],
  probe: string,
): ProbeEvent {
  const ctStatus = status(fields[5] ?? '');
  // Records with a family carry it after the protocol; older ones are IPv4.
  const withFamily = fields.length === CONNTRACK_FAMILY_FIELD_COUNT;
  const of = withFamily ? family(fields, 7) : 'ipv4';
  const first = withFamily ? 8 : 7;
  const original = tuple(fields, first, 'original', of);
  const reply = tuple(fields, first + 4, 'reply', of);
  return {
    kind,
    probe,
    monotonicNs: nanoseconds(fields, 2),
    cpu: unsigned(fields, 3, 'cpu', 0xffff),
    netnsInode: unsigned(fields, 4, 'netns', 0xffffffff),
    ctStatus,
    protocol: transport(unsigned(fields, 6, 'proto', 255)),
    original,
    reply,
    race: classifyRace(original, reply),
  };
}

function dnsDropEvent(fields: string[], probe: string, reasonName: DropReasonNamer): ProbeEvent {
  const event = dnsDropFields(fields, probe, reasonName);
  // Schemas 3 and 4: an example; the probe's maps count the drop (docs/probe-events.md).
  return fields[1] === '3' || fields[1] === '4' ? { ...event, count: 0 } : event;
}

function dnsDropFields(fields: string[], probe: string, reasonName: DropReasonNamer): DnsDropEvent {
  // Schema 4 carries the family after the reason; the fields after it shift by one.
  const withFamily = fields.length === DNS_V4_FIELD_COUNT;
  const of = withFamily ? family(fields, 6) : 'ipv4';
  const shift = withFamily ? 1 : 0;
  const packet = tuple(fields, 6 + shift, 'packet', of);
  const location = fields[10 + shift] ?? '-';
  // `-`: the kernel has no drop reasons (dns-drops-no-reason.bt); name it from the location.
  const reason =
    fields[5] === NO_REASON
      ? dropReasonFromLocation(location)
      : reasonName(unsigned(fields, 5, 'reason', 0xffffffff));
  let conntrack: DnsDropEvent['conntrack'];
  if (fields.length >= DNS_V2_FIELD_COUNT) {
    const ctStatus = status(fields[11 + shift] ?? '');
    const original = tuple(fields, 12 + shift, 'original', of);
    // Status 0: the packet had no conntrack entry.
    if (ctStatus !== 0) {
      conntrack = {
        status: ctStatus,
        original,
        lostInsertRace:
          reason === 'NETFILTER_DROP' &&
          location === 'nf_hook_slow' &&
          (ctStatus & IPS_CONFIRMED) === 0 &&
          (ctStatus & IPS_NAT_DONE) === IPS_NAT_DONE,
      };
    }
  }
  const event: DnsDropEvent = {
    kind: 'dns_drop',
    probe,
    monotonicNs: nanoseconds(fields, 2),
    cpu: unsigned(fields, 3, 'cpu', 0xffff),
    netnsInode: unsigned(fields, 4, 'netns', 0xffffffff),
    protocol: 'udp',
    reason,
    // A datagram between two port-53 sockets is a server-to-server query.
    direction: packet.dstPort === 53 ? 'query' : 'response',
    tuple: packet,
    location,
  };
  // Spreading an empty object on the hot path costs more than a second literal.
  return conntrack ? { ...event, conntrack } : event;
}

/**
 * `dns_nodata 1 nsecs cpu netns client server message-bytes`, or schema 2 with the family
 * before the client (docs/probe-events.md).
 */
function dnsNoDataLine(fields: string[], probe: string): DecodedLine {
  let base: Omit<DnsNoDataEvent, 'name' | 'qtype'>;
  // Schema 2 carries the family; the fields after it shift by one.
  const shift = fields.length === DNS_NODATA_FAMILY_FIELD_COUNT ? 1 : 0;
  const message = fields[7 + shift] ?? '';
  try {
    const of = shift === 1 ? family(fields, 5) : 'ipv4';
    base = {
      kind: 'dns_nodata',
      probe,
      monotonicNs: nanoseconds(fields, 2),
      cpu: unsigned(fields, 3, 'cpu', 0xffff),
      netnsInode: unsigned(fields, 4, 'netns', 0xffffffff),
      protocol: 'udp',
      tuple: {
        srcIp: address(fields, 5 + shift, 'client', of),
        srcPort: 0,
        dstIp: address(fields, 6 + shift, 'server', of),
        dstPort: 53,
      },
    };
  } catch (error) {
    if (error instanceof FieldError) return rejected('bad_field', `dns_nodata: ${error.message}`);
    throw error;
  }
  const bytes = bytesOfEscapedHex(message);
  const question = bytes === undefined ? undefined : dnsQuestionOf(bytes);
  if (question === undefined) {
    return rejected('bad_dns_message', `dns_nodata: no question in "${truncate(message)}"`);
  }
  return { type: 'event', event: { ...base, name: question.name, qtype: question.type } };
}

function snatPortAllocationEvent(fields: string[], probe: string): ProbeEvent {
  const withFamily = fields.length === SNAT_PORT_ALLOC_FAMILY_FIELD_COUNT;
  const of = withFamily ? family(fields, 8) : 'ipv4';
  const first = withFamily ? 9 : 8;
  return {
    kind: 'snat_port_alloc',
    probe,
    monotonicNs: nanoseconds(fields, 2),
    cpu: unsigned(fields, 3, 'cpu', 0xffff),
    netnsInode: unsigned(fields, 4, 'netns', 0xffffffff),
    latencyNs: unsigned(fields, 5, 'latency_ns', Number.MAX_SAFE_INTEGER),
    attempts: unsigned(fields, 6, 'attempts', 0xffffffff),
    protocol: transport(unsigned(fields, 7, 'proto', 255)),
    original: tuple(fields, first, 'original', of),
    translatedIp: address(fields, first + 4, 'translated source', of),
    translatedPort: port(fields, first + 5, 'translated source port'),
  };
}

/** Field counts by record and schema version. */
const EXPECTED_FIELDS: ReadonlyMap<string, ReadonlyMap<string, number>> = new Map([
  [
    'insert_failed',
    new Map([
      ['1', CONNTRACK_FIELD_COUNT],
      // Schema 2: the same fields, an example of failures the probe counts in the kernel.
      ['2', CONNTRACK_FIELD_COUNT],
      // Schema 3: schema 2 with the address family, IPv4 or IPv6.
      ['3', CONNTRACK_FAMILY_FIELD_COUNT],
    ]),
  ],
  [
    'clash_resolved',
    new Map([
      ['1', CONNTRACK_FIELD_COUNT],
      ['2', CONNTRACK_FAMILY_FIELD_COUNT],
    ]),
  ],
  [
    'dns_drop',
    new Map([
      ['1', DNS_V1_FIELD_COUNT],
      ['2', DNS_V2_FIELD_COUNT],
      ['3', DNS_V3_FIELD_COUNT],
      ['4', DNS_V4_FIELD_COUNT],
    ]),
  ],
  ['map_cleared', new Map([['1', MAP_CLEARED_FIELD_COUNT]])],
  [
    'dns_nodata',
    new Map([
      ['1', DNS_NODATA_FIELD_COUNT],
      ['2', DNS_NODATA_FAMILY_FIELD_COUNT],
    ]),
  ],
  [
    'snat_port_alloc',
    new Map([
      ['1', SNAT_PORT_ALLOC_FIELD_COUNT],
      ['2', SNAT_PORT_ALLOC_FAMILY_FIELD_COUNT],
    ]),
  ],
]);

/**
 * The number of space-separated fields of a record at a schema version, or undefined for a
 * record or version the decoder does not read (test/probes/script-records.test.ts holds every
 * script's printf formats to it).
 */
export function recordFieldCount(record: string, schema: string): number | undefined {
  return EXPECTED_FIELDS.get(record)?.get(schema);
}

function decodeEventLine(payload: string, probe: string, reasonName: DropReasonNamer): DecodedLine {
  const fields = payload.trimEnd().split(' ');
  const record = fields[0];
  const versions = EXPECTED_FIELDS.get(record ?? '');
  if (versions === undefined) {
    return rejected('unknown_record', `unknown event record "${truncate(record ?? '')}"`);
  }
  const expected = versions.get(fields[1] ?? '');
  if (expected === undefined) {
    return rejected(
      'unsupported_version',
      `${record} schema version "${truncate(fields[1] ?? '')}"`,
    );
  }
  if (fields.length !== expected) {
    return rejected(
      'bad_field_count',
      `${record} has ${fields.length} fields, expected ${expected}: "${truncate(payload)}"`,
    );
  }
  if (record === 'map_cleared') {
    const map = fields[2] ?? '';
    if (!isMapName(map))
      return rejected('bad_field', `map_cleared: not a map name: "${truncate(map)}"`);
    return { type: 'map_cleared', map };
  }
  if (record === 'dns_nodata') return dnsNoDataLine(fields, probe);
  try {
    const event =
      record === 'dns_drop'
        ? dnsDropEvent(fields, probe, reasonName)
        : record === 'snat_port_alloc'
          ? snatPortAllocationEvent(fields, probe)
          : record === 'insert_failed' && (fields[1] === '2' || fields[1] === '3')
            ? { ...conntrackEvent('insert_failed', fields, probe), count: 0 }
            : conntrackEvent(record as 'insert_failed' | 'clash_resolved', fields, probe);
    return { type: 'event', event };
  } catch (error) {
    if (error instanceof FieldError) return rejected('bad_field', `${record}: ${error.message}`);
    throw error;
  }
}

function truncate(text: string): string {
  return text.length > 120 ? `${text.slice(0, 120)}…` : text;
}

/** `data[key]` when it is a non-negative safe integer, else undefined. */
function countIn(data: unknown, key: string): number | undefined {
  if (typeof data !== 'object' || data === null) return undefined;
  const value: unknown = (data as Record<string, unknown>)[key];
  return Number.isSafeInteger(value) && (value as number) >= 0 ? (value as number) : undefined;
}

function describeCount(data: unknown, key: string): string {
  if (typeof data !== 'object' || data === null) return 'no data object';
  const value: unknown = (data as Record<string, unknown>)[key];
  if (value === undefined) return `no ${key}`;
  return truncate(typeof value === 'number' ? String(value) : (JSON.stringify(value) ?? ''));
}

function decodeRecord(record: unknown, probe: string, reasonName: DropReasonNamer): DecodedLine {
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    return rejected('not_an_object', 'bpftrace record is not a JSON object');
  }
  const { type, data } = record as { type?: unknown; data?: unknown };
  if (typeof type !== 'string') return rejected('not_an_object', 'bpftrace record has no type');
  switch (type) {
    case 'printf':
      if (typeof data !== 'string') return rejected('bad_field', 'printf record without text');
      return decodeEventLine(data, probe, reasonName);
    case 'attached_probes': {
      const probes = countIn(data, 'probes');
      if (probes === undefined) {
        return rejected(
          'bad_count',
          `attached_probes count is not a count: ${describeCount(data, 'probes')}`,
        );
      }
      return { type: 'attached', probes };
    }
    case 'lost_events': {
      // Added to a counter: a negative, fractional or unsafe count would corrupt it (or make
      // prom-client throw), so it is rejected here rather than trusted downstream.
      const events = countIn(data, 'events');
      if (events === undefined) {
        return rejected(
          'bad_count',
          `lost_events count is not a count: ${describeCount(data, 'events')}`,
        );
      }
      return { type: 'lost', count: events };
    }
    case 'map':
      return decodeMap(data);
    default:
      return { type: 'ignored', recordType: type };
  }
}

/** bpftrace names maps `@name` (or `@` alone); anything else in a map record is not bpftrace's. */
function isMapName(text: string): boolean {
  return /^@[A-Za-z0-9_]{0,64}$/.test(text);
}

/**
 * `{"@name": {"k1,k2": 3, …}}`: a printed map of counts. A map of one value (`{"@n": 3}`) or
 * of other values (histograms, strings) is not a count map: ignored, as before.
 */
function decodeMap(data: unknown): DecodedLine {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    return rejected('bad_field', 'map record without a map');
  }
  const names = Object.keys(data);
  const map = names[0];
  if (names.length !== 1 || map === undefined || !isMapName(map)) {
    return rejected(
      'bad_field',
      `map record names ${names.length} maps: "${truncate(names.join(','))}"`,
    );
  }
  const contents: unknown = (data as Record<string, unknown>)[map];
  if (typeof contents !== 'object' || contents === null || Array.isArray(contents)) {
    return { type: 'ignored', recordType: 'map' };
  }
  const entries: CountEntry[] = [];
  for (const [key, value] of Object.entries(contents)) {
    // Added to counters: a negative, fractional or unsafe value would corrupt them.
    if (!Number.isSafeInteger(value) || (value as number) < 0) {
      return rejected(
        'bad_count',
        `${map}[${truncate(key)}] is not a count: ${truncate(String(JSON.stringify(value)))}`,
      );
    }
    entries.push({ key, value: value as number });
  }
  return { type: 'counts', map, entries };
}

/**
 * Builds the decoder for one probe's output. Pure and total: it never throws, whatever the
 * line; what it cannot read comes back as `rejected` with a stable code.
 */
export function createLineDecoder(probe: string, reasonName: DropReasonNamer): LineDecoder {
  return (line: string): DecodedLine => {
    if (line.length > MAX_LINE_CHARS) {
      return rejected('line_too_long', `${line.length} characters: "${truncate(line)}"`);
    }
    if (line.startsWith(PRINTF_PREFIX) && line.endsWith(PRINTF_SUFFIX)) {
      // The payload holds no escape and no quote when the first of each after the prefix is
      // the suffix's own: one scan each, and no copy of a line that is not taken.
      const end = line.length - PRINTF_SUFFIX.length;
      if (
        line.indexOf('\\', PRINTF_PREFIX.length) === end &&
        line.indexOf('"', PRINTF_PREFIX.length) === end + 2
      ) {
        return decodeEventLine(line.slice(PRINTF_PREFIX.length, end), probe, reasonName);
      }
    }
    let record: unknown;
    try {
      record = JSON.parse(line);
    } catch {
      return rejected('not_json', `not JSON: "${truncate(line)}"`);
    }
    return decodeRecord(record, probe, reasonName);
  };
}
