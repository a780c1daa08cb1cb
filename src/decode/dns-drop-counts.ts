import type { DnsDropEvent, FlowTuple } from '../events/types.js';
import { CumulativeCounts, ipv4Field, u32Field, type ParsedCountKey } from './count-maps.js';
import { dropReasonFromLocation } from './drop-location.js';
import type { DropReasonNamer } from './decode.js';
import { ipv6FromHalves } from './ip-address.js';

/**
 * The maps of probes/tracepoint/dns-drops*.bt (docs/probe-events.md): IPv4 datagrams in
 * `@dns_drops_*`, IPv6 datagrams in `@dns_drops6_*` (each address keyed as two u64 halves);
 * one totals map for both.
 */
export const DNS_DROP_MAPS = [
  '@dns_drops_0',
  '@dns_drops_1',
  '@dns_drops6_0',
  '@dns_drops6_1',
] as const;
export const DNS_DROP_TOTALS_MAP = '@dns_drop_totals';

/** The reason key of a kernel without drop reasons (dns-drops-no-reason.bt). */
const NO_REASON_KEY = 0xffffffff;
const KEY_FIELDS = 9;
const IPV6_KEY_FIELDS = 13;
const CT_NONE = 0;
const CT_LOST_INSERT_RACE_SIGNATURE = 2;

export interface DnsDropCountsOptions {
  readonly probe: string;
  readonly reasonName: DropReasonNamer;
  /** CLOCK_MONOTONIC nanoseconds: the time given to the events of a reading. */
  readonly monotonicNs: () => bigint;
}

/**
 * The DNS-drop probe's in-kernel counts as events. The totals are keyed by the reason code as
 * the kernel keyed it, not its name: without drop reasons every drop has the one code while
 * its name comes from where it was freed.
 */
export class DnsDropCounts extends CumulativeCounts<DnsDropEvent> {
  constructor(options: DnsDropCountsOptions) {
    const reasonOf = (code: number, location: string): string =>
      code === NO_REASON_KEY ? dropReasonFromLocation(location) : options.reasonName(code);
    super(
      {
        maps: DNS_DROP_MAPS,
        totalsMap: DNS_DROP_TOTALS_MAP,
        parseKey: (key, count, monotonicNs) =>
          dnsDropOf(key, count, monotonicNs, options.probe, reasonOf),
        nameOfTotalsKey: (key) => {
          const code = u32Field(key);
          // Without drop reasons the location is not in the totals' key: the reason is unknown.
          return code === undefined ? undefined : reasonOf(code, '');
        },
      },
      options.monotonicNs,
    );
  }
}

function dnsDropOf(
  key: string,
  count: number,
  monotonicNs: bigint,
  probe: string,
  reasonOf: (code: number, location: string) => string,
): ParsedCountKey<DnsDropEvent> | undefined {
  const fields = key.split(',');
  if (fields.length === KEY_FIELDS) {
    const [netnsText, reasonText, location, queryText, src, dst, ctText, osrc, odst] = fields;
    return dropEvent(
      {
        netnsText,
        reasonText,
        location,
        queryText,
        src: ipv4Field(src),
        dst: ipv4Field(dst),
        ctText,
        osrc: ipv4Field(osrc),
        odst: ipv4Field(odst),
      },
      count,
      monotonicNs,
      probe,
      reasonOf,
    );
  }
  if (fields.length !== IPV6_KEY_FIELDS) return undefined;
  const [netnsText, reasonText, location, queryText, srcA, srcB, dstA, dstB, ctText] = fields;
  const [osrcA, osrcB, odstA, odstB] = fields.slice(9);
  const halves = (a: string | undefined, b: string | undefined): string | undefined =>
    a === undefined || b === undefined ? undefined : ipv6FromHalves(a, b);
  return dropEvent(
    {
      netnsText,
      reasonText,
      location,
      queryText,
      src: halves(srcA, srcB),
      dst: halves(dstA, dstB),
      ctText,
      osrc: halves(osrcA, osrcB),
      odst: halves(odstA, odstB),
    },
    count,
    monotonicNs,
    probe,
    reasonOf,
  );
}

/** A key's fields, addresses already read (undefined where not an address of its family). */
interface KeyFields {
  readonly netnsText: string | undefined;
  readonly reasonText: string | undefined;
  readonly location: string | undefined;
  readonly queryText: string | undefined;
  readonly src: string | undefined;
  readonly dst: string | undefined;
  readonly ctText: string | undefined;
  readonly osrc: string | undefined;
  readonly odst: string | undefined;
}

function dropEvent(
  { netnsText, reasonText, location = '', queryText, src, dst, ctText, osrc, odst }: KeyFields,
  count: number,
  monotonicNs: bigint,
  probe: string,
  reasonOf: (code: number, location: string) => string,
): ParsedCountKey<DnsDropEvent> | undefined {
  const netnsInode = u32Field(netnsText);
  const reasonCode = u32Field(reasonText);
  const ctClass = u32Field(ctText);
  if (
    netnsInode === undefined ||
    reasonCode === undefined ||
    location === '' ||
    (queryText !== '0' && queryText !== '1') ||
    src === undefined ||
    dst === undefined ||
    ctClass === undefined ||
    ctClass > CT_LOST_INSERT_RACE_SIGNATURE ||
    osrc === undefined ||
    odst === undefined
  ) {
    return undefined;
  }
  const reason = reasonOf(reasonCode, location);
  const query = queryText === '1';
  // Ports are not kept in the kernel's keys (one per lookup would fill the map): 0 here,
  // except the DNS side, which is 53 by the probe's filter.
  const onDnsSide = (client: string, server: string): FlowTuple =>
    query
      ? { srcIp: client, srcPort: 0, dstIp: server, dstPort: 53 }
      : { srcIp: client, srcPort: 53, dstIp: server, dstPort: 0 };
  const event: DnsDropEvent = {
    kind: 'dns_drop',
    probe,
    monotonicNs,
    cpu: 0,
    netnsInode,
    protocol: 'udp',
    reason,
    direction: query ? 'query' : 'response',
    tuple: onDnsSide(src, dst),
    location,
    count,
  };
  const totalsKey = String(reasonCode);
  if (ctClass === CT_NONE) return { event, totalsKey };
  return { event: { ...event, conntrack: conntrackOf(ctClass, osrc, odst, event) }, totalsKey };
}

/** The drop's conntrack entry, as far as the probe's key keeps it. */
function conntrackOf(
  ctClass: number,
  osrc: string,
  odst: string,
  { reason, location }: Pick<DnsDropEvent, 'reason' | 'location'>,
): NonNullable<DnsDropEvent['conntrack']> {
  return {
    // The class stands for the bits the agent reads of the status.
    status: ctClass === CT_LOST_INSERT_RACE_SIGNATURE ? 0x180 : 0x8,
    // The entry's original direction is the query, whichever way this datagram went.
    original: { srcIp: osrc, srcPort: 0, dstIp: odst, dstPort: 53 },
    lostInsertRace:
      ctClass === CT_LOST_INSERT_RACE_SIGNATURE &&
      reason === 'NETFILTER_DROP' &&
      location === 'nf_hook_slow',
  };
}
