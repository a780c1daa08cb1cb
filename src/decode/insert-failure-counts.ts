import type { InsertFailureEvent, RaceKind, TransportProtocol } from '../events/types.js';
import { CumulativeCounts, ipv4Field, u32Field, type ParsedCountKey } from './count-maps.js';

/** The maps of probes/tracepoint/conntrack-insert-failed.bt and probes/kprobe/conntrack-confirm.bt. */
export const INSERT_FAILURE_MAPS = ['@insert_failures_0', '@insert_failures_1'] as const;
export const INSERT_FAILURE_TOTALS_MAP = '@insert_failure_totals';

/** The probes' race code: bit 0 the source was rewritten, bit 1 the destination. */
const RACES: readonly RaceKind[] = ['none', 'snat', 'dnat', 'snat_dnat'];
const KEY_FIELDS = 9;
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
  const netnsInode = u32Field(netnsText);
  const raceCode = u32Field(raceText);
  const race = raceCode === undefined ? undefined : RACES[raceCode];
  const proto = u32Field(protoText);
  const osrc = ipv4Field(osrcText);
  const odst = ipv4Field(odstText);
  const rsrc = ipv4Field(rsrcText);
  const rdst = ipv4Field(rdstText);
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
