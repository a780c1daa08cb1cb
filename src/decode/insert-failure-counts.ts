import type { InsertFailureEvent, RaceKind, TransportProtocol } from '../events/types.js';
import { CumulativeCounts, ipv4Field, u32Field, type ParsedCountKey } from './count-maps.js';
import { ipv6FromHalves } from './ip-address.js';

/**
 * The maps of probes/tracepoint/conntrack-insert-failed.bt and probes/kprobe/conntrack-confirm.bt:
 * IPv4 flows in `@insert_failures_*`, IPv6 flows in `@insert_failures6_*` (each address keyed as
 * two u64 halves); one totals map for both.
 */
export const INSERT_FAILURE_MAPS = [
  '@insert_failures_0',
  '@insert_failures_1',
  '@insert_failures6_0',
  '@insert_failures6_1',
] as const;
export const INSERT_FAILURE_TOTALS_MAP = '@insert_failure_totals';

/** The probes' race code: bit 0 the source was rewritten, bit 1 the destination. */
const RACES: readonly RaceKind[] = ['none', 'snat', 'dnat', 'snat_dnat'];
const KEY_FIELDS = 9;
const IPV6_KEY_FIELDS = 13;
const MAX_PORT = 0xffff;
// IPS_SRC_NAT_DONE and IPS_DST_NAT_DONE, IPS_CONFIRMED clear: what every counted entry had.
const COUNTED_STATUS = 0x180;

export interface InsertFailureCountsOptions {
  readonly probe: string;
  /** CLOCK_MONOTONIC nanoseconds: the time given to the events of a reading. */
  readonly monotonicNs: () => bigint;
}

/** The insert-failure probes' in-kernel counts as events; totals are kept per race kind. */
export class InsertFailureCounts extends CumulativeCounts<InsertFailureEvent> {
  constructor(options: InsertFailureCountsOptions) {
    super(
      {
        maps: INSERT_FAILURE_MAPS,
        totalsMap: INSERT_FAILURE_TOTALS_MAP,
        parseKey: (key, count, monotonicNs) =>
          insertFailureOf(key, count, monotonicNs, options.probe),
        nameOfTotalsKey: (key) => {
          const code = u32Field(key);
          return code === undefined ? undefined : RACES[code];
        },
      },
      options.monotonicNs,
    );
  }
}

function transport(protocolNumber: number): TransportProtocol {
  if (protocolNumber === 17) return 'udp';
  if (protocolNumber === 6) return 'tcp';
  if (protocolNumber === 1) return 'icmp';
  return 'other';
}

function insertFailureOf(
  key: string,
  count: number,
  monotonicNs: bigint,
  probe: string,
): ParsedCountKey<InsertFailureEvent> | undefined {
  const fields = key.split(',');
  if (fields.length === IPV6_KEY_FIELDS)
    return ipv6InsertFailureOf(fields, count, monotonicNs, probe);
  if (fields.length !== KEY_FIELDS) return undefined;
  const [
    netnsText,
    raceText,
    protoText,
    osrcText,
    odstText,
    odportText,
    rsrcText,
    rsportText,
    rdstText,
  ] = fields;
  return failureEvent(
    {
      netnsText,
      raceText,
      protoText,
      osrc: ipv4Field(osrcText),
      odst: ipv4Field(odstText),
      odportText,
      rsrc: ipv4Field(rsrcText),
      rsportText,
      rdst: ipv4Field(rdstText),
    },
    count,
    monotonicNs,
    probe,
  );
}

function ipv6InsertFailureOf(
  fields: readonly string[],
  count: number,
  monotonicNs: bigint,
  probe: string,
): ParsedCountKey<InsertFailureEvent> | undefined {
  const [netnsText, raceText, protoText, osrcA, osrcB, odstA, odstB, odportText] = fields;
  const [rsrcA, rsrcB, rsportText, rdstA, rdstB] = fields.slice(8);
  const halves = (a: string | undefined, b: string | undefined): string | undefined =>
    a === undefined || b === undefined ? undefined : ipv6FromHalves(a, b);
  return failureEvent(
    {
      netnsText,
      raceText,
      protoText,
      osrc: halves(osrcA, osrcB),
      odst: halves(odstA, odstB),
      odportText,
      rsrc: halves(rsrcA, rsrcB),
      rsportText,
      rdst: halves(rdstA, rdstB),
    },
    count,
    monotonicNs,
    probe,
  );
}

/** A key's fields, addresses already read (undefined where not an address of its family). */
interface KeyFields {
  readonly netnsText: string | undefined;
  readonly raceText: string | undefined;
  readonly protoText: string | undefined;
  readonly osrc: string | undefined;
  readonly odst: string | undefined;
  readonly odportText: string | undefined;
  readonly rsrc: string | undefined;
  readonly rsportText: string | undefined;
  readonly rdst: string | undefined;
}

function failureEvent(
  { netnsText, raceText, protoText, osrc, odst, odportText, rsrc, rsportText, rdst }: KeyFields,
  count: number,
  monotonicNs: bigint,
  probe: string,
): ParsedCountKey<InsertFailureEvent> | undefined {
  const netnsInode = u32Field(netnsText);
  const raceCode = u32Field(raceText);
  const race = raceCode === undefined ? undefined : RACES[raceCode];
  const proto = u32Field(protoText);
  // Server ports are keyed in network order, as the tuple holds them.
  const odport = networkPort(odportText);
  const rsport = networkPort(rsportText);
  if (
    netnsInode === undefined ||
    raceCode === undefined ||
    race === undefined ||
    proto === undefined ||
    proto > 255 ||
    osrc === undefined ||
    odst === undefined ||
    rsrc === undefined ||
    rdst === undefined ||
    odport === undefined ||
    rsport === undefined
  ) {
    return undefined;
  }
  return {
    event: {
      kind: 'insert_failed',
      probe,
      monotonicNs,
      cpu: 0,
      netnsInode,
      protocol: transport(proto),
      ctStatus: COUNTED_STATUS,
      // Client ports are not kept in the kernel's keys (one per flow would fill the map).
      original: { srcIp: osrc, srcPort: 0, dstIp: odst, dstPort: odport },
      reply: { srcIp: rsrc, srcPort: rsport, dstIp: rdst, dstPort: 0 },
      race,
      count,
    },
    totalsKey: String(raceCode),
  };
}

function networkPort(text: string | undefined): number | undefined {
  const value = u32Field(text);
  if (value === undefined || value > MAX_PORT) return undefined;
  return ((value & 0xff) << 8) | (value >> 8);
}
