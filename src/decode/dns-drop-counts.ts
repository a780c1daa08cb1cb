import type { DnsDropEvent, FlowTuple } from '../events/types.js';
import type { CountEntry } from './decoded-line.js';
import { dropReasonFromLocation } from './drop-location.js';
import type { DropReasonNamer } from './decode.js';

/** The maps of probes/tracepoint/dns-drops*.bt (docs/probe-events.md). */
export const DNS_DROP_MAPS = ['@dns_drops_0', '@dns_drops_1'] as const;
export const DNS_DROP_TOTALS_MAP = '@dns_drop_totals';

/** The reason key of a kernel without drop reasons (dns-drops-no-reason.bt). */
const NO_REASON_KEY = 0xffffffff;
const KEY_FIELDS = 9;
const CT_NONE = 0;
const CT_LOST_INSERT_RACE_SIGNATURE = 2;
const MAX_U32 = 0xffffffff;

/** What one printed map of the DNS-drop probe adds. */
export interface DnsDropCountsUpdate {
  /** One event per key that grew, `count` being its growth. */
  readonly events: readonly DnsDropEvent[];
  /**
   * Drops the kernel's totals counted that no detailed key holds, by reason: the detailed map
   * was full, so the kernel could not add their key. Counted, but blamed on nobody.
   */
  readonly uncounted: ReadonlyMap<string, number>;
  /** Keys that are not what the probe prints; their counts are left out. */
  readonly rejectedKeys: readonly string[];
}

const NOTHING: DnsDropCountsUpdate = { events: [], uncounted: new Map(), rejectedKeys: [] };

export interface DnsDropCountsOptions {
  readonly probe: string;
  readonly reasonName: DropReasonNamer;
  /** CLOCK_MONOTONIC nanoseconds: the time given to the events of a reading. */
  readonly monotonicNs: () => bigint;
}

/**
 * Turns the DNS-drop probe's cumulative in-kernel counts into events. The maps are never
 * cleared while written (so no increment can fall between a print and a clear): the growth of
 * each key since its last print is what is new. A generation map the probe clears after its
 * writers moved on is forgotten here on `map_cleared`, and a new bpftrace run starts over.
 */
export class DnsDropCounts {
  /** Last printed value per map and key. */
  private readonly lastValues = new Map<string, Map<string, number>>();
  /**
   * Per reason code as the kernel keyed it: growth of the detailed maps handed on, and what was
   * reported uncounted. By code, not name: without drop reasons every drop has the one code
   * while its name comes from where it was freed.
   */
  private readonly countedByCode = new Map<number, number>();
  private readonly uncountedByCode = new Map<number, number>();
  /** The totals as last printed; compared once the detailed maps printed after them are in. */
  private lastTotals = new Map<number, number>();

  constructor(private readonly options: DnsDropCountsOptions) {}

  /** A new bpftrace run: its maps start empty. */
  reset(): void {
    this.lastValues.clear();
    this.countedByCode.clear();
    this.uncountedByCode.clear();
    this.lastTotals = new Map();
  }

  cleared(map: string): void {
    this.lastValues.delete(map);
  }

  observe(map: string, entries: readonly CountEntry[]): DnsDropCountsUpdate {
    if (map === DNS_DROP_TOTALS_MAP) return this.observeTotals(entries);
    if (!(DNS_DROP_MAPS as readonly string[]).includes(map)) return NOTHING;
    let last = this.lastValues.get(map);
    if (last === undefined) {
      last = new Map();
      this.lastValues.set(map, last);
    }
    const events: DnsDropEvent[] = [];
    const rejectedKeys: string[] = [];
    const monotonicNs = this.options.monotonicNs();
    for (const { key, value } of entries) {
      const previous = last.get(key) ?? 0;
      // Smaller than before only if the map was cleared unannounced: it counts from zero.
      const growth = value >= previous ? value - previous : value;
      last.set(key, value);
      if (growth === 0) continue;
      const parsed = this.eventOf(key, growth, monotonicNs);
      if (parsed === undefined) {
        rejectedKeys.push(key);
        continue;
      }
      const { event, reasonCode } = parsed;
      this.countedByCode.set(reasonCode, (this.countedByCode.get(reasonCode) ?? 0) + growth);
      events.push(event);
    }
    return { events, uncounted: new Map(), rejectedKeys };
  }

  /**
   * The totals are printed before the detailed maps, so by the time the next totals arrive the
   * detailed counts handed on were read after the previous totals: they can only be ahead of
   * them, unless keys had no room. What they lack is uncounted — never more than really was.
   */
  private observeTotals(entries: readonly CountEntry[]): DnsDropCountsUpdate {
    const uncounted = new Map<string, number>();
    for (const [code, total] of this.lastTotals) {
      const before = this.uncountedByCode.get(code) ?? 0;
      const missing = total - (this.countedByCode.get(code) ?? 0) - before;
      if (missing <= 0) continue;
      this.uncountedByCode.set(code, before + missing);
      // Without drop reasons the location is not in the totals' key: the reason is unknown.
      const reason = this.reasonOf(code, '');
      uncounted.set(reason, (uncounted.get(reason) ?? 0) + missing);
    }
    const totals = new Map<number, number>();
    const rejectedKeys: string[] = [];
    for (const { key, value } of entries) {
      const code = u32(key);
      if (code === undefined) rejectedKeys.push(key);
      else totals.set(code, value);
    }
    this.lastTotals = totals;
    return { events: [], uncounted, rejectedKeys };
  }

  private reasonOf(code: number, location: string): string {
    return code === NO_REASON_KEY
      ? dropReasonFromLocation(location)
      : this.options.reasonName(code);
  }

  private eventOf(
    key: string,
    count: number,
    monotonicNs: bigint,
  ): { event: DnsDropEvent; reasonCode: number } | undefined {
    const fields = key.split(',');
    if (fields.length !== KEY_FIELDS) return undefined;
    const [
      netnsText,
      reasonText,
      location = '',
      queryText,
      srcText,
      dstText,
      ctText,
      osrcText,
      odstText,
    ] = fields;
    const netnsInode = u32(netnsText);
    const reasonCode = u32(reasonText);
    const src = ipv4Of(srcText);
    const dst = ipv4Of(dstText);
    const ctClass = u32(ctText);
    const osrc = ipv4Of(osrcText);
    const odst = ipv4Of(odstText);
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
    const reason = this.reasonOf(reasonCode, location);
    const query = queryText === '1';
    // Ports are not kept in the kernel's keys (one per lookup would fill the map): 0 here,
    // except the DNS side, which is 53 by the probe's filter.
    const tuple: FlowTuple = query
      ? { srcIp: src, srcPort: 0, dstIp: dst, dstPort: 53 }
      : { srcIp: src, srcPort: 53, dstIp: dst, dstPort: 0 };
    const event: DnsDropEvent = {
      kind: 'dns_drop',
      probe: this.options.probe,
      monotonicNs,
      cpu: 0,
      netnsInode,
      protocol: 'udp',
      reason,
      direction: query ? 'query' : 'response',
      tuple,
      location,
      count,
    };
    if (ctClass === CT_NONE) return { event, reasonCode };
    const withConntrack: DnsDropEvent = {
      ...event,
      conntrack: {
        // The class stands for the bits the agent reads of the status.
        status: ctClass === CT_LOST_INSERT_RACE_SIGNATURE ? 0x180 : 0x8,
        original: query
          ? { srcIp: osrc, srcPort: 0, dstIp: odst, dstPort: 53 }
          : { srcIp: osrc, srcPort: 53, dstIp: odst, dstPort: 0 },
        lostInsertRace:
          ctClass === CT_LOST_INSERT_RACE_SIGNATURE &&
          reason === 'NETFILTER_DROP' &&
          location === 'nf_hook_slow',
      },
    };
    return { event: withConntrack, reasonCode };
  }
}

function u32(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,10}$/.test(text)) return undefined;
  const value = Number(text);
  return value <= MAX_U32 ? value : undefined;
}

/** An IPv4 address the probe keyed as a u32 read little-endian from network-order bytes. */
function ipv4Of(text: string | undefined): string | undefined {
  const value = u32(text);
  if (value === undefined) return undefined;
  return `${value & 0xff}.${(value >>> 8) & 0xff}.${(value >>> 16) & 0xff}.${value >>> 24}`;
}
