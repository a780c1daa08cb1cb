import { DNS_QUERY_DURATION_BUCKETS } from '../events/dns-query-buckets.js';
import {
  LOOKUP_END_BITS,
  lookupEndBitsOfValue,
  lookupEndOf,
  type LookupEnd,
} from '../events/lookup-end.js';
import type { DnsAnswerClass, DnsQueryEvent } from '../events/types.js';
import { ipv4Field, u32Field } from './count-maps.js';
import type { CountEntry } from './decoded-line.js';
import { ipv6FromHalves } from './ip-address.js';

/** The maps of probes/tracepoint/dns-queries.bt (docs/probe-events.md). */
export const DNS_QUERY_ANSWERS_MAP = '@dns_q_answers';
export const DNS_QUERY_PENDING_MAPS = ['@dns_q_pending_0', '@dns_q_pending_1'] as const;
export const DNS_QUERY_UNTRACKED_MAP = '@dns_q_untracked';
/** Parallel queries: sent while another of the same socket was pending (two generations). */
export const DNS_QUERY_PARALLEL_MAPS = ['@dns_q_parallel_0', '@dns_q_parallel_1'] as const;
/** Queries sent again while still pending: each earlier copy unanswered (two generations). */
export const DNS_QUERY_RESENT_MAPS = ['@dns_q_resent_0', '@dns_q_resent_1'] as const;
/**
 * IPv6 queries, in maps of their own: bpftrace 0.17 cannot key a map by a 16-byte array, so
 * each address is keyed as two u64 halves (`ipv6FromHalves`), one field more per address.
 */
export const DNS_QUERY_ANSWERS6_MAP = '@dns_q_answers6';
export const DNS_QUERY_PENDING6_MAPS = ['@dns_q_pending6_0', '@dns_q_pending6_1'] as const;
export const DNS_QUERY_RESENT6_MAPS = ['@dns_q_resent6_0', '@dns_q_resent6_1'] as const;
export const DNS_QUERY_PARALLEL6_MAPS = ['@dns_q_parallel6_0', '@dns_q_parallel6_1'] as const;

/**
 * Lookups ended by the next lookup of the same thread: cumulative per (netns, client, queries,
 * end bits).
 */
export const DNS_QUERY_LOOKUPS_MAPS = ['@dns_q_lookups_0', '@dns_q_lookups_1'] as const;
/** Lookups ended by a quiet period: printed once before cleared, one key per lookup. */
export const DNS_QUERY_LOOKUP_MAPS = ['@dns_q_lookup_n_0', '@dns_q_lookup_n_1'] as const;
/** The same two for IPv6 clients, the client address keyed as two u64 halves. */
export const DNS_QUERY_LOOKUPS6_MAPS = ['@dns_q_lookups6_0', '@dns_q_lookups6_1'] as const;
export const DNS_QUERY_LOOKUP6_MAPS = ['@dns_q_lookup_n6_0', '@dns_q_lookup_n6_1'] as const;
/** The probe's cap of the queries-per-lookup key: above 32 it keys 33. */
export const MAX_COUNTED_QUERIES_PER_LOOKUP = 32;

/** Whether a printed map is one of the DNS-query probe's (its names all start so). */
export function isDnsQueryMap(map: string): boolean {
  return map.startsWith('@dns_q_');
}

/** The probe's class numbers, in its order. */
const ANSWER_CLASSES: readonly DnsAnswerClass[] = [
  'NOERROR',
  'NODATA',
  'NXDOMAIN',
  'SERVFAIL',
  'REFUSED',
  'OTHER',
];
const MAX_U16 = 0xffff;
/** The largest `@dns_q_lookup_n_*` value: the four class bits above 16-bit answers and queries. */
const MAX_LOOKUP_VALUE = 0xf_ffff_ffff;

/** What one printed map of the DNS-query probe adds. */
export interface DnsQueryCountsUpdate {
  /** Answered queries per key that grew; unanswered queries per client and server. */
  readonly events: readonly DnsQueryEvent[];
  /** Queries the pending map had no room for, by growth per namespace: neither matched nor missed. */
  readonly untracked: number;
  /** Keys that are not what the probe prints; left out. */
  readonly rejectedKeys: readonly string[];
}

const NOTHING: DnsQueryCountsUpdate = { events: [], untracked: 0, rejectedKeys: [] };

export interface DnsQueryCountsOptions {
  readonly probe: string;
  /** CLOCK_MONOTONIC nanoseconds: the time given to the events of a reading. */
  readonly monotonicNs: () => bigint;
}

/**
 * Turns the DNS-query probe's maps into events. The answer and untracked counts are cumulative
 * and never cleared while bpftrace runs: their growth since the last print is what is new. The
 * parallel counts are the same in two generations, each forgotten on its `map_cleared`. A
 * printed pending generation is printed once, just before the probe clears it: every key in it
 * is one query that went unanswered, summed here per namespace, client and server.
 */
export class DnsQueryCounts {
  private readonly lastValues = new Map<string, Map<string, number>>();

  constructor(private readonly options: DnsQueryCountsOptions) {}

  /**
   * The probe cleared a generation map after its last print (`map_cleared`): its keys count
   * from zero again.
   */
  cleared(map: string): void {
    this.lastValues.delete(map);
  }

  observe(map: string, entries: readonly CountEntry[]): DnsQueryCountsUpdate {
    if ((DNS_QUERY_PENDING_MAPS as readonly string[]).includes(map))
      return this.unanswered(entries, ipv4Addresses);
    if ((DNS_QUERY_PENDING6_MAPS as readonly string[]).includes(map))
      return this.unanswered(entries, ipv6Addresses);
    if ((DNS_QUERY_LOOKUP_MAPS as readonly string[]).includes(map))
      return this.quietLookups(entries, ipv4Addresses);
    if ((DNS_QUERY_LOOKUP6_MAPS as readonly string[]).includes(map))
      return this.quietLookups(entries, ipv6Addresses);
    const parallel6 = (DNS_QUERY_PARALLEL6_MAPS as readonly string[]).includes(map);
    const parallel = parallel6 || (DNS_QUERY_PARALLEL_MAPS as readonly string[]).includes(map);
    const resent4 = (DNS_QUERY_RESENT_MAPS as readonly string[]).includes(map);
    const resent6 = (DNS_QUERY_RESENT6_MAPS as readonly string[]).includes(map);
    const resent = resent4 || resent6;
    const lookups6 = (DNS_QUERY_LOOKUPS6_MAPS as readonly string[]).includes(map);
    const lookups = lookups6 || (DNS_QUERY_LOOKUPS_MAPS as readonly string[]).includes(map);
    const addresses =
      resent6 || parallel6 || lookups6 || map === DNS_QUERY_ANSWERS6_MAP
        ? ipv6Addresses
        : ipv4Addresses;
    if (
      map !== DNS_QUERY_ANSWERS_MAP &&
      map !== DNS_QUERY_ANSWERS6_MAP &&
      map !== DNS_QUERY_UNTRACKED_MAP &&
      !resent &&
      !parallel &&
      !lookups
    )
      return NOTHING;
    const monotonicNs = this.options.monotonicNs();
    let last = this.lastValues.get(map);
    if (last === undefined) {
      last = new Map();
      this.lastValues.set(map, last);
    }
    const events: DnsQueryEvent[] = [];
    const rejectedKeys: string[] = [];
    let untracked = 0;
    for (const { key, value } of entries) {
      const previous = last.get(key) ?? 0;
      const growth = value >= previous ? value - previous : value;
      last.set(key, value);
      if (growth === 0) continue;
      if (map === DNS_QUERY_UNTRACKED_MAP) {
        if (u32Field(key) === undefined) rejectedKeys.push(key);
        else untracked += growth;
        continue;
      }
      const event = parallel
        ? this.parallel(key, growth, monotonicNs, addresses)
        : resent
          ? this.resent(key, growth, monotonicNs, addresses)
          : lookups
            ? this.lookups(key, growth, monotonicNs, addresses)
            : this.answered(key, growth, monotonicNs, addresses);
      if (event === undefined) rejectedKeys.push(key);
      else events.push(event);
    }
    return { events, untracked, rejectedKeys };
  }

  private answered(
    key: string,
    count: number,
    monotonicNs: bigint,
    addresses: AddressFields,
  ): DnsQueryEvent | undefined {
    const fields = key.split(',');
    if (fields.length !== 3 + addresses.width) return undefined;
    const netnsInode = u32Field(fields[0]);
    const client = addresses.read(fields, 1);
    const [classText, bucketText] = fields.slice(1 + addresses.width);
    const answer = ANSWER_CLASSES[u32Field(classText) ?? ANSWER_CLASSES.length];
    const bucket = u32Field(bucketText);
    if (
      netnsInode === undefined ||
      client === undefined ||
      answer === undefined ||
      bucket === undefined ||
      bucket > DNS_QUERY_DURATION_BUCKETS.length
    ) {
      return undefined;
    }
    return queryEvent(this.options.probe, monotonicNs, netnsInode, client, count, {
      server: addresses.unspecified,
      outcome: 'answered',
      answer,
      latencyBucketSeconds: DNS_QUERY_DURATION_BUCKETS[bucket] ?? Infinity,
    });
  }

  /** A (namespace, client) key of the parallel maps: queries sent beside a pending one. */
  private parallel(
    key: string,
    count: number,
    monotonicNs: bigint,
    addresses: AddressFields,
  ): DnsQueryEvent | undefined {
    const fields = key.split(',');
    if (fields.length !== 1 + addresses.width) return undefined;
    const netnsInode = u32Field(fields[0]);
    const client = addresses.read(fields, 1);
    if (netnsInode === undefined || client === undefined) return undefined;
    return queryEvent(this.options.probe, monotonicNs, netnsInode, client, count, {
      server: addresses.unspecified,
      outcome: 'parallel',
    });
  }

  /**
   * Queries sent again while still pending, per namespace, client and server: each earlier copy
   * went unanswered within the resolver's own timeout, reported as it is resent.
   */
  private resent(
    key: string,
    count: number,
    monotonicNs: bigint,
    addresses: AddressFields,
  ): DnsQueryEvent | undefined {
    const fields = key.split(',');
    if (fields.length !== 1 + 2 * addresses.width) return undefined;
    const netnsInode = u32Field(fields[0]);
    const client = addresses.read(fields, 1);
    const server = addresses.read(fields, 1 + addresses.width);
    if (netnsInode === undefined || client === undefined || server === undefined) return undefined;
    return queryEvent(this.options.probe, monotonicNs, netnsInode, client, count, {
      outcome: 'unanswered',
      server,
    });
  }

  /**
   * A (namespace, client, queries, end bits) key of the lookups map: lookups that cost that many
   * and ended so.
   */
  private lookups(
    key: string,
    count: number,
    monotonicNs: bigint,
    addresses: AddressFields,
  ): DnsQueryEvent | undefined {
    const fields = key.split(',');
    if (fields.length !== 3 + addresses.width) return undefined;
    const netnsInode = u32Field(fields[0]);
    const client = addresses.read(fields, 1);
    const queries = u32Field(fields[1 + addresses.width]);
    const bits = u32Field(fields[2 + addresses.width]);
    if (
      netnsInode === undefined ||
      client === undefined ||
      queries === undefined ||
      queries === 0 ||
      queries > MAX_COUNTED_QUERIES_PER_LOOKUP + 1 ||
      bits === undefined ||
      (bits & ~LOOKUP_END_BITS) !== 0
    ) {
      return undefined;
    }
    return queryEvent(this.options.probe, monotonicNs, netnsInode, client, count, {
      server: addresses.unspecified,
      outcome: 'lookup',
      queriesPerLookup: queries > MAX_COUNTED_QUERIES_PER_LOOKUP ? Infinity : queries,
      lookupEnd: lookupEndOf(bits),
    });
  }

  /**
   * A printed idle generation of `@dns_q_lookup_n_*` or `@dns_q_lookup_n6_*`: one key per thread
   * (namespace, client, thread id) whose lookup ended quietly, its value what the probe kept of
   * it (answer classes << 32 | answers << 16 | queries); summed per client, queries and end.
   */
  private quietLookups(
    entries: readonly CountEntry[],
    addresses: AddressFields,
  ): DnsQueryCountsUpdate {
    const monotonicNs = this.options.monotonicNs();
    const groups = new Tally<{
      netnsInode: number;
      client: string;
      queries: number;
      end: LookupEnd;
    }>();
    const rejectedKeys: string[] = [];
    for (const { key, value } of entries) {
      const fields = key.split(',');
      const netnsInode = u32Field(fields[0]);
      const client = addresses.read(fields, 1);
      const tid = u32Field(fields[1 + addresses.width]);
      const kept = Number.isSafeInteger(value) ? lookupEndBitsOfValue(value) : undefined;
      if (
        fields.length !== 2 + addresses.width ||
        netnsInode === undefined ||
        client === undefined ||
        tid === undefined ||
        kept === undefined ||
        kept.queries < 1 ||
        value > MAX_LOOKUP_VALUE
      ) {
        rejectedKeys.push(key);
        continue;
      }
      const queries = Math.min(kept.queries, MAX_COUNTED_QUERIES_PER_LOOKUP + 1);
      const end = lookupEndOf(kept.bits);
      groups.add(`${netnsInode},${client},${queries},${end}`, {
        netnsInode,
        client,
        queries,
        end,
      });
    }
    const events = groups.counted().map(({ netnsInode, client, queries, end, count }) =>
      queryEvent(this.options.probe, monotonicNs, netnsInode, client, count, {
        server: addresses.unspecified,
        outcome: 'lookup',
        queriesPerLookup: queries > MAX_COUNTED_QUERIES_PER_LOOKUP ? Infinity : queries,
        lookupEnd: end,
      }),
    );
    return { events, untracked: 0, rejectedKeys };
  }

  /** One key per query (namespace, client, port, DNS id, server): summed per client and server. */
  private unanswered(
    entries: readonly CountEntry[],
    addresses: AddressFields,
  ): DnsQueryCountsUpdate {
    const monotonicNs = this.options.monotonicNs();
    const groups = new Tally<{ netnsInode: number; client: string; server: string }>();
    const rejectedKeys: string[] = [];
    const width = addresses.width;
    for (const { key } of entries) {
      const fields = key.split(',');
      const netnsInode = u32Field(fields[0]);
      const client = addresses.read(fields, 1);
      const port = u32Field(fields[1 + width]);
      const id = u32Field(fields[2 + width]);
      const server = addresses.read(fields, 3 + width);
      if (
        fields.length !== 3 + 2 * width ||
        netnsInode === undefined ||
        client === undefined ||
        port === undefined ||
        port > MAX_U16 ||
        id === undefined ||
        id > MAX_U16 ||
        server === undefined
      ) {
        rejectedKeys.push(key);
        continue;
      }
      groups.add(`${netnsInode},${client},${server}`, { netnsInode, client, server });
    }
    const events = groups.counted().map(({ netnsInode, client, server, count }) =>
      queryEvent(this.options.probe, monotonicNs, netnsInode, client, count, {
        outcome: 'unanswered',
        server,
      }),
    );
    return { events, untracked: 0, rejectedKeys };
  }
}

/** How a map's keys hold an address: one u32 field (IPv4) or two u64 halves (IPv6). */
interface AddressFields {
  /** The key fields one address takes. */
  readonly width: 1 | 2;
  /** The address starting at field `at`, in canonical text, or undefined. */
  read(fields: readonly string[], at: number): string | undefined;
  /** The server of a key that keeps none. */
  readonly unspecified: string;
}

const ipv4Addresses: AddressFields = {
  width: 1,
  read: (fields, at) => ipv4Field(fields[at]),
  unspecified: '0.0.0.0',
};

const ipv6Addresses: AddressFields = {
  width: 2,
  read: (fields, at) => {
    const [first, second] = [fields[at], fields[at + 1]];
    return first === undefined || second === undefined ? undefined : ipv6FromHalves(first, second);
  },
  unspecified: '::',
};

/** Keys printed one per query or thread, counted per group (client and server, or client and size). */
class Tally<G extends object> {
  private readonly groups = new Map<string, G & { count: number }>();

  add(groupKey: string, group: G): void {
    const known = this.groups.get(groupKey);
    if (known) known.count += 1;
    else this.groups.set(groupKey, { ...group, count: 1 });
  }

  counted(): (G & { count: number })[] {
    return [...this.groups.values()];
  }
}

/**
 * One client's DNS-query event: the server it asked where the key names one (unanswered
 * queries), else the unspecified address of its family (0.0.0.0 by default); ports are not kept.
 */
function queryEvent(
  probe: string,
  monotonicNs: bigint,
  netnsInode: number,
  client: string,
  count: number,
  detail: Pick<
    DnsQueryEvent,
    'outcome' | 'answer' | 'latencyBucketSeconds' | 'queriesPerLookup' | 'lookupEnd'
  > & {
    readonly server?: string;
  },
): DnsQueryEvent {
  const { server = '0.0.0.0', ...outcome } = detail;
  return {
    kind: 'dns_query',
    probe,
    monotonicNs,
    cpu: 0,
    netnsInode,
    protocol: 'udp',
    tuple: { srcIp: client, srcPort: 0, dstIp: server, dstPort: 53 },
    ...outcome,
    count,
  };
}
