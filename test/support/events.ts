import { advised } from '../../src/diagnose/remedies.js';
import type {
  AttributedEvent,
  DnsDropEvent,
  DnsNoDataEvent,
  DnsQueryEvent,
  InsertFailureEvent,
  PodRef,
} from '../../src/events/types.js';

export function insertFailure(overrides: Partial<InsertFailureEvent> = {}): InsertFailureEvent {
  return {
    kind: 'insert_failed',
    probe: 'tracepoint/conntrack-insert-failed',
    monotonicNs: 1_000_000_000n,
    cpu: 1,
    netnsInode: 4026532512,
    protocol: 'udp',
    ctStatus: 0x190,
    original: { srcIp: '10.244.0.2', srcPort: 40000, dstIp: '192.0.2.53', dstPort: 53 },
    reply: { srcIp: '192.0.2.53', srcPort: 53, dstIp: '192.0.2.1', dstPort: 40000 },
    race: 'snat',
    ...overrides,
  };
}

export function dnsDrop(overrides: Partial<DnsDropEvent> = {}): DnsDropEvent {
  return {
    kind: 'dns_drop',
    probe: 'tracepoint/dns-drops',
    monotonicNs: 1_000_000_000n,
    cpu: 0,
    netnsInode: 4026532512,
    protocol: 'udp',
    reason: 'NETFILTER_DROP',
    direction: 'query',
    tuple: { srcIp: '10.244.0.3', srcPort: 41234, dstIp: '10.96.0.10', dstPort: 53 },
    location: 'nft_do_chain',
    ...overrides,
  };
}

export function dnsQuery(overrides: Partial<DnsQueryEvent> = {}): DnsQueryEvent {
  return {
    kind: 'dns_query',
    probe: 'tracepoint/dns-queries',
    monotonicNs: 1_000_000_000n,
    cpu: 0,
    netnsInode: 4026532512,
    protocol: 'udp',
    tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 },
    outcome: 'answered',
    answer: 'NOERROR',
    latencyBucketSeconds: 0.005,
    count: 1,
    ...overrides,
  };
}

/** `count` lookups of one client, each costing `queriesPerLookup` queries (a `lookup` record). */
export function dnsLookups(
  queriesPerLookup: number,
  count: number,
  overrides: Partial<DnsQueryEvent> = {},
): DnsQueryEvent {
  return dnsQuery({
    outcome: 'lookup',
    answer: undefined,
    latencyBucketSeconds: undefined,
    queriesPerLookup,
    count,
    ...overrides,
  });
}

/** A NODATA answer to an A question for a search-list name (seed 004's case). */
export function dnsNoData(overrides: Partial<DnsNoDataEvent> = {}): DnsNoDataEvent {
  return {
    kind: 'dns_nodata',
    probe: 'tracepoint/dns-queries',
    monotonicNs: 1_000_000_000n,
    cpu: 0,
    netnsInode: 4026532512,
    protocol: 'udp',
    tuple: { srcIp: '10.244.0.2', srcPort: 0, dstIp: '10.96.0.10', dstPort: 53 },
    name: 'www.example.test.corp.test',
    qtype: 'A',
    ...overrides,
  };
}

export function attributed(
  event: AttributedEvent['event'],
  pod?: PodRef,
  sourceIp = '10.244.0.2',
): AttributedEvent {
  // As the pipeline hands it to the sinks: with the advice its stage writes, undiagnosed.
  return advised(
    { event, attribution: { sourceIp, netnsInode: event.netnsInode, pod }, wallTimeMs: 0 },
    undefined,
  );
}

export const podA: PodRef = {
  namespace: 'shop',
  name: 'cart-7d9f',
  uid: 'uid-a',
  hostNetwork: false,
};
