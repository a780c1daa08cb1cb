import { classifyRace } from '../events/classify-race.js';
import type { DnsDropEvent, FlowTuple, ProbeEvent, TransportProtocol } from '../events/types.js';
import type { DecodedLine, DecodeErrorCode, LineDecoder } from './decoded-line.js';

/** Names the numeric drop reasons of the running kernel (read from the tracepoint format). */
export type DropReasonNamer = (code: number) => string;

// bpftrace 0.17 prints printf records exactly like this; matching the prefix lets the hot
// path skip JSON.parse. Anything unusual (escapes, other spacing) falls back to JSON.parse.
const PRINTF_PREFIX = '{"type": "printf", "data": "';
const PRINTF_SUFFIX = '\\n"}';

const CONNTRACK_FIELD_COUNT = 16;
// Schema 1 had no conntrack fields; recordings of it still decode.
const DNS_V1_FIELD_COUNT = 11;
const DNS_V2_FIELD_COUNT = 16;
// IPS_CONFIRMED clear, IPS_SRC_NAT_DONE and IPS_DST_NAT_DONE set: the entry reached the
// confirm hook and lost (see probes/tracepoint/conntrack-insert-failed.bt).
const IPS_CONFIRMED = 0x8;
const IPS_NAT_DONE = 0x180;
const SNAT_PORT_ALLOC_FIELD_COUNT = 14;
const IPV4 = /^(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?:\.(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const UNSIGNED = /^\d+$/;
const HEX = /^(?:0x)?[0-9a-fA-F]+$/;

class FieldError extends Error {}

function rejected(code: DecodeErrorCode, detail: string): DecodedLine {
  return { type: 'rejected', code, detail };
}

function unsigned(fields: string[], index: number, name: string, max: number): number {
  const text = fields[index] ?? '';
  if (!UNSIGNED.test(text)) throw new FieldError(`${name} is not an unsigned integer: "${text}"`);
  const value = Number(text);
  if (value > max) throw new FieldError(`${name} out of range: ${text}`);
  return value;
}

function port(fields: string[], index: number, name: string): number {
  return unsigned(fields, index, name, 0xffff);
}

function ipv4(fields: string[], index: number, name: string): string {
  const text = fields[index] ?? '';
  if (!IPV4.test(text)) throw new FieldError(`${name} is not an IPv4 address: "${text}"`);
  return text;
}

function nanoseconds(fields: string[], index: number): bigint {
  const text = fields[index] ?? '';
  if (!UNSIGNED.test(text)) throw new FieldError(`nsecs is not an unsigned integer: "${text}"`);
  return BigInt(text);
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

function tuple(fields: string[], first: number, label: string): FlowTuple {
  return {
    srcIp: ipv4(fields, first, `${label} source`),
    srcPort: port(fields, first + 1, `${label} source port`),
    dstIp: ipv4(fields, first + 2, `${label} destination`),
    dstPort: port(fields, first + 3, `${label} destination port`),
  };
}

function conntrackEvent(
  kind: 'insert_failed' | 'clash_resolved',
  fields: string[],
  probe: string,
): ProbeEvent {
  const statusText = fields[5] ?? '';
  if (!HEX.test(statusText)) throw new FieldError(`status is not hex: "${statusText}"`);
  const original = tuple(fields, 7, 'original');
  const reply = tuple(fields, 11, 'reply');
  return {
    kind,
    probe,
    monotonicNs: nanoseconds(fields, 2),
    cpu: unsigned(fields, 3, 'cpu', 0xffff),
    netnsInode: unsigned(fields, 4, 'netns', 0xffffffff),
    ctStatus: Number.parseInt(statusText, 16),
    protocol: transport(unsigned(fields, 6, 'proto', 255)),
    original,
    reply,
    race: classifyRace(original, reply),
  };
}

function dnsDropEvent(fields: string[], probe: string, reasonName: DropReasonNamer): ProbeEvent {
  const packet = tuple(fields, 6, 'packet');
  const reason = reasonName(unsigned(fields, 5, 'reason', 0xffffffff));
  const location = fields[10] ?? '-';
  let conntrack: DnsDropEvent['conntrack'];
  if (fields.length === DNS_V2_FIELD_COUNT) {
    const statusText = fields[11] ?? '';
    if (!HEX.test(statusText)) throw new FieldError(`status is not hex: "${statusText}"`);
    const status = Number.parseInt(statusText, 16);
    const original = tuple(fields, 12, 'original');
    // Status 0: the packet had no conntrack entry.
    if (status !== 0) {
      conntrack = {
        status,
        original,
        lostInsertRace:
          reason === 'NETFILTER_DROP' &&
          location === 'nf_hook_slow' &&
          (status & IPS_CONFIRMED) === 0 &&
          (status & IPS_NAT_DONE) === IPS_NAT_DONE,
      };
    }
  }
  return {
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
    ...(conntrack ? { conntrack } : {}),
  };
}

function snatPortAllocationEvent(fields: string[], probe: string): ProbeEvent {
  return {
    kind: 'snat_port_alloc',
    probe,
    monotonicNs: nanoseconds(fields, 2),
    cpu: unsigned(fields, 3, 'cpu', 0xffff),
    netnsInode: unsigned(fields, 4, 'netns', 0xffffffff),
    latencyNs: unsigned(fields, 5, 'latency_ns', Number.MAX_SAFE_INTEGER),
    attempts: unsigned(fields, 6, 'attempts', 0xffffffff),
    protocol: transport(unsigned(fields, 7, 'proto', 255)),
    original: tuple(fields, 8, 'original'),
    translatedIp: ipv4(fields, 12, 'translated source'),
    translatedPort: port(fields, 13, 'translated source port'),
  };
}

/** Field counts by record and schema version. */
const EXPECTED_FIELDS: Readonly<Record<string, Readonly<Record<string, number>>>> = {
  insert_failed: { 1: CONNTRACK_FIELD_COUNT },
  clash_resolved: { 1: CONNTRACK_FIELD_COUNT },
  dns_drop: { 1: DNS_V1_FIELD_COUNT, 2: DNS_V2_FIELD_COUNT },
  snat_port_alloc: { 1: SNAT_PORT_ALLOC_FIELD_COUNT },
};

function decodeEventLine(payload: string, probe: string, reasonName: DropReasonNamer): DecodedLine {
  const fields = payload.trimEnd().split(' ');
  const record = fields[0];
  const versions = EXPECTED_FIELDS[record ?? ''];
  if (versions === undefined) {
    return rejected('unknown_record', `unknown event record "${truncate(record ?? '')}"`);
  }
  const expected = versions[fields[1] ?? ''];
  if (expected === undefined) {
    return rejected('unsupported_version', `${record} schema version "${fields[1] ?? ''}"`);
  }
  if (fields.length !== expected) {
    return rejected(
      'bad_field_count',
      `${record} has ${fields.length} fields, expected ${expected}: "${truncate(payload)}"`,
    );
  }
  try {
    const event =
      record === 'dns_drop'
        ? dnsDropEvent(fields, probe, reasonName)
        : record === 'snat_port_alloc'
          ? snatPortAllocationEvent(fields, probe)
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
      const probes = (data as { probes?: unknown } | null)?.probes;
      if (typeof probes !== 'number') return rejected('bad_field', 'attached_probes without count');
      return { type: 'attached', probes };
    }
    case 'lost_events': {
      const events = (data as { events?: unknown } | null)?.events;
      if (typeof events !== 'number') return rejected('bad_field', 'lost_events without count');
      return { type: 'lost', count: events };
    }
    default:
      return { type: 'ignored', recordType: type };
  }
}

/**
 * Builds the decoder for one probe's output. Pure and total: it never throws, whatever the
 * line; what it cannot read comes back as `rejected` with a stable code.
 */
export function createLineDecoder(probe: string, reasonName: DropReasonNamer): LineDecoder {
  return (line: string): DecodedLine => {
    if (line.startsWith(PRINTF_PREFIX) && line.endsWith(PRINTF_SUFFIX)) {
      const payload = line.slice(PRINTF_PREFIX.length, line.length - PRINTF_SUFFIX.length);
      if (!payload.includes('\\') && !payload.includes('"')) {
        return decodeEventLine(payload, probe, reasonName);
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
