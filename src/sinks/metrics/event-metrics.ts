import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type {
  AttributedEvent,
  Attribution,
  DnsNoDataEvent,
  DnsQueryEvent,
} from '../../events/types.js';
import type { EventDiagnosis } from '../../events/diagnosis.js';
import { noDataStopOf } from '../../events/nodata-stop.js';
import { DNS_QUERY_DURATION_BUCKETS } from '../../events/dns-query-buckets.js';
import type { EventSink } from '../../event-pipeline.js';
const DNS_QUERY_OVERFLOW_SECONDS = 10;

const ATTRIBUTION_LABELS = ['source_ip', 'namespace', 'pod', 'service'] as const;

type Labels = Record<string, string>;

/** One labelled series and the increments it has had since the last scrape. */
interface Series {
  readonly key: string;
  readonly counter: Counter;
  readonly labels: Labels;
  pending: number;
  /** Every occurrence counted since the series was created (`podCounts`). */
  total: number;
  /** When an event last counted in it after a scrape (clock ms); see `count`. */
  lastCountedMs: number;
}

/**
 * How long series without a pod label (keyed by the client address alone: every series
 * standalone, the unattributed ones with Kubernetes) are kept. A pod's series are removed
 * with the pod instead (`forgetPod`).
 */
export interface SourceSeriesRetention {
  /** A source series no event has counted in for this long is forgotten at the next sweep. */
  readonly idleMs: number;
  /** At most this many source series; a new one past it evicts the least recently counted. */
  readonly maxSeries: number;
  /** Scrapes sweep for idle series at most this often. */
  readonly sweepEveryMs: number;
}

export const DEFAULT_SOURCE_SERIES_RETENTION: SourceSeriesRetention = {
  idleMs: 10 * 60_000,
  maxSeries: 10_000,
  sweepEveryMs: 30_000,
};

export interface EventMetricsOptions {
  /** Wall-clock milliseconds; the injected clock's `nowMs`. */
  readonly nowMs?: () => number;
  readonly retention?: SourceSeriesRetention;
  /**
   * Whether `handle` counts events no pod was found for. With Kubernetes they are the
   * unattributed share worth a series; standalone every event is keyed by its address anyway.
   */
  readonly countUnattributed?: boolean;
}

/** One pod's event counts, by race or drop reason. */
export interface PodEventCounts {
  readonly insertFailures: Readonly<Record<string, number>>;
  readonly clashesResolved: Readonly<Record<string, number>>;
  readonly dnsDrops: Readonly<Record<string, number>>;
}

export type SeriesForgottenReason = 'idle' | 'limit';

// Label values are Kubernetes names, addresses and kernel symbols: none holds a NUL.
const SEPARATOR = '\u0000';

/**
 * The event counters. Series carry the pod they are blamed on, so the set of series grows
 * with the pods that ever had a drop; `forgetPod` removes a deleted pod's series to keep the
 * cardinality bounded by the pods that currently (or very recently) exist. Series without a
 * pod carry only the client address, which no deletion announces: they are forgotten once
 * idle, and their number is capped (`SourceSeriesRetention`).
 *
 * Events are counted into a cache of series and handed to prom-client when a scrape collects
 * the counters: prom-client hashes and validates the label object on every `inc`, which costs
 * more than decoding the event. A scrape sees every event recorded before it.
 */
export class EventMetrics implements EventSink {
  readonly name = 'metrics';
  private readonly insertFailures: Counter;
  private readonly dnsDrops: Counter;
  private readonly clashesResolved: Counter;
  private readonly unattributed: Counter;
  private readonly snatAllocationSeconds: Histogram;
  private readonly snatAllocationAttempts: Histogram;
  private readonly valuesRejected: Counter;
  private readonly seriesForgotten: Counter;
  private readonly keysRejected: Counter;
  private readonly dnsQueries: Counter;
  private readonly dnsUnanswered: Counter;
  private readonly dnsParallel: Counter;
  private readonly dnsQueryDuration: Histogram;
  private readonly dnsQueriesPerLookup: Histogram;
  /** The queries-per-lookup series per pod (`namespace/name`), removed with the pod. */
  private readonly lookupLabelsByPod = new Map<string, Labels>();
  private readonly dnsQueriesUntracked: Counter;
  private readonly dnsLookups: Counter;
  private readonly lookupsStoppedOnNoData: Counter;
  /** Label sets of the duration histogram per pod (namespace/name), removed with the pod. */
  private readonly durationLabelsByPod = new Map<string, Labels>();
  private readonly series = new Map<string, Series>();
  /**
   * The series without a pod label, least recently counted first: a series moves to the end
   * when it is first counted after a scrape, so the order costs one move per series and scrape,
   * not one per event.
   */
  private readonly sourceSeries = new Map<string, Series>();
  private readonly nowMs: () => number;
  private readonly retention: SourceSeriesRetention;
  private readonly countUnattributed: boolean;
  private lastSweepMs: number;
  /** Keys in `series` of each pod (namespace/name). */
  private readonly seriesKeysByPod = new Map<string, string[]>();
  /** Series with increments prom-client has not seen yet. */
  private readonly pendingSeries = new Set<Series>();
  /** Runs before every scrape collects the event metrics. */
  private readonly beforeScrape = (): void => {
    // Sweep first: a series whose last increments are still pending is kept for this scrape.
    if (this.nowMs() - this.lastSweepMs >= this.retention.sweepEveryMs) this.sweepIdleSeries();
    this.flushPending();
  };
  private readonly flushPending = (): void => {
    for (const series of this.pendingSeries) {
      series.counter.inc(series.labels, series.pending);
      series.pending = 0;
    }
    this.pendingSeries.clear();
  };

  constructor(registry: Registry, options: EventMetricsOptions = {}) {
    this.nowMs = options.nowMs ?? Date.now;
    this.countUnattributed = options.countUnattributed ?? false;
    this.retention = options.retention ?? DEFAULT_SOURCE_SERIES_RETENTION;
    this.lastSweepMs = this.nowMs();
    this.insertFailures = new Counter({
      name: 'conntrack_observer_insert_failures_total',
      help: 'Packets the kernel dropped because their conntrack entry lost an insertion race (insert_failed), by race kind and the client it hit.',
      labelNames: ['race', ...ATTRIBUTION_LABELS],
      registers: [registry],
      collect: this.beforeScrape,
    });
    this.dnsDrops = new Counter({
      name: 'conntrack_observer_dns_drops_total',
      help: 'UDP DNS datagrams (port 53 on either side) the kernel dropped, by drop reason, direction and client.',
      labelNames: ['reason', 'direction', ...ATTRIBUTION_LABELS],
      registers: [registry],
      collect: this.beforeScrape,
    });
    this.clashesResolved = new Counter({
      name: 'conntrack_observer_clash_resolved_total',
      help: 'Conntrack insertion races the kernel resolved without dropping (kprobe mode only), by race kind and client.',
      labelNames: ['race', ...ATTRIBUTION_LABELS],
      registers: [registry],
      collect: this.beforeScrape,
    });
    this.unattributed = new Counter({
      name: 'conntrack_observer_unattributed_events_total',
      help: 'Events that could not be attributed to a pod (Kubernetes mode), by event kind. They are still counted in the event metrics with empty pod labels.',
      labelNames: ['kind'],
      registers: [registry],
      collect: this.beforeScrape,
    });
    // Per node namespace, not per pod: the port search is the node's, whoever triggered it.
    this.snatAllocationSeconds = new Histogram({
      name: 'conntrack_observer_snat_port_allocation_seconds',
      help: 'Time the kernel took to bind a source NAT for a new connection (kprobe mode only).',
      buckets: [1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 1e-2],
      registers: [registry],
    });
    this.snatAllocationAttempts = new Histogram({
      name: 'conntrack_observer_snat_port_allocation_attempts',
      help: 'Candidate tuples the kernel checked to bind a source NAT; above 1 means ports clashed (kprobe mode only).',
      buckets: [1, 2, 4, 8, 16, 64, 256],
      registers: [registry],
    });
    this.valuesRejected = new Counter({
      name: 'conntrack_observer_event_values_rejected_total',
      help: 'Events whose measured values (latency, attempts) were not finite non-negative numbers and were left out of the histograms, by event kind. The decoder rejects such lines, so anything here is a bug.',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.seriesForgotten = new Counter({
      name: 'conntrack_observer_event_series_forgotten_total',
      help: 'Event series without a pod label that were removed: idle (no event for the idle time) or limit (evicted, least recently counted first, to stay under the series cap; its increments since the last scrape are lost).',
      labelNames: ['reason'],
      registers: [registry],
    });
    this.keysRejected = new Counter({
      name: 'conntrack_observer_probe_map_keys_rejected_total',
      help: 'Keys of a probe count map that were not as the probe prints them; their counts are left out (a bug: the log has examples).',
      labelNames: ['probe'],
      registers: [registry],
    });
    const dns = dnsQueryMetrics(registry, this.beforeScrape);
    this.dnsQueries = dns.queries;
    this.dnsUnanswered = dns.unanswered;
    this.dnsParallel = dns.parallel;
    this.dnsQueryDuration = dns.duration;
    this.dnsQueriesPerLookup = dns.perLookup;
    this.dnsLookups = dns.lookups;
    this.dnsQueriesUntracked = dns.untracked;
    this.lookupsStoppedOnNoData = dns.stoppedOnNoData;
    this.valuesRejected.inc({ kind: 'snat_port_alloc' }, 0);
    for (const reason of ['idle', 'limit'] satisfies SeriesForgottenReason[])
      this.seriesForgotten.inc({ reason }, 0);
    registerSeriesGauge(registry, this.series, this.beforeScrape);
  }

  handle(attributed: AttributedEvent): void {
    this.record(attributed, this.countUnattributed);
  }

  record({ event, attribution, diagnosis }: AttributedEvent, countUnattributed: boolean): void {
    if (event.kind === 'snat_port_alloc') {
      // prom-client throws on a value that is not finite; a negative one is nonsense.
      if (!isMeasurement(event.latencyNs) || !isMeasurement(event.attempts)) {
        this.valuesRejected.inc({ kind: event.kind });
        return;
      }
      this.snatAllocationSeconds.observe(event.latencyNs / 1e9);
      this.snatAllocationAttempts.observe(event.attempts);
      return;
    }
    if (event.kind === 'dns_query') {
      this.recordDnsQuery(event, attribution, countUnattributed);
      return;
    }
    if (event.kind === 'dns_nodata') {
      this.recordNoDataStop(event, attribution, diagnosis);
      return;
    }
    // A drop stands for as many packets as its count: 0 for an example of drops the probe
    // counts in the kernel, which the count's own event carries.
    const occurrences = occurrencesOf(event);
    if (occurrences === 0) return;
    const { pod, service } = attribution;
    const namespace = pod?.namespace ?? '';
    const podName = pod?.name ?? '';
    const serviceName = service ? `${service.namespace}/${service.name}` : '';
    const who =
      attribution.sourceIp + SEPARATOR + namespace + SEPARATOR + podName + SEPARATOR + serviceName;
    let series: Series | undefined;
    if (event.kind === 'dns_drop') {
      const key = 'd' + SEPARATOR + event.reason + SEPARATOR + event.direction + SEPARATOR + who;
      series = this.series.get(key);
      if (series === undefined) {
        series = this.createSeries(key, this.dnsDrops, {
          reason: event.reason,
          direction: event.direction,
          source_ip: attribution.sourceIp,
          namespace,
          pod: podName,
          service: serviceName,
        });
      }
    } else {
      const insertFailed = event.kind === 'insert_failed';
      const key = (insertFailed ? 'i' : 'c') + SEPARATOR + event.race + SEPARATOR + who;
      series = this.series.get(key);
      if (series === undefined) {
        series = this.createSeries(key, insertFailed ? this.insertFailures : this.clashesResolved, {
          race: event.race,
          source_ip: attribution.sourceIp,
          namespace,
          pod: podName,
          service: serviceName,
        });
      }
    }
    this.count(series, occurrences);
    if (countUnattributed && !pod && !attribution.snatToNode) {
      const key = 'u' + SEPARATOR + event.kind;
      this.count(
        this.series.get(key) ?? this.createSeries(key, this.unattributed, { kind: event.kind }),
        occurrences,
      );
    }
  }

  private recordDnsQuery(
    event: DnsQueryEvent,
    attribution: Attribution,
    countUnattributed: boolean,
  ): void {
    if (event.count <= 0) return;
    const { pod, service } = attribution;
    const namespace = pod?.namespace ?? '';
    const podName = pod?.name ?? '';
    const who = attribution.sourceIp + SEPARATOR + namespace + SEPARATOR + podName;
    let series: Series | undefined;
    if (event.outcome === 'lookup') {
      this.observeLookups(event, namespace, podName);
      return;
    }
    if (event.outcome === 'unanswered') {
      const serviceName = service ? `${service.namespace}/${service.name}` : '';
      const cause = event.cause ?? 'none';
      const key = 'qu' + SEPARATOR + cause + SEPARATOR + who + SEPARATOR + serviceName;
      series =
        this.series.get(key) ??
        this.createSeries(key, this.dnsUnanswered, {
          cause,
          source_ip: attribution.sourceIp,
          namespace,
          pod: podName,
          service: serviceName,
        });
    } else if (event.outcome === 'parallel') {
      const key = 'qp' + SEPARATOR + who;
      series =
        this.series.get(key) ??
        this.createSeries(key, this.dnsParallel, {
          source_ip: attribution.sourceIp,
          namespace,
          pod: podName,
        });
    } else {
      const rcode = event.answer ?? 'OTHER';
      const key = 'qa' + SEPARATOR + rcode + SEPARATOR + who;
      series =
        this.series.get(key) ??
        this.createSeries(key, this.dnsQueries, {
          rcode,
          source_ip: attribution.sourceIp,
          namespace,
          pod: podName,
        });
      this.observeDuration(event, namespace, podName);
    }
    this.count(series, event.count);
    // Parallel queries are also answered or unanswered: counted unattributed there, once.
    if (countUnattributed && !pod && event.outcome !== 'parallel') {
      const key = 'u' + SEPARATOR + event.kind;
      this.count(
        this.series.get(key) ?? this.createSeries(key, this.unattributed, { kind: event.kind }),
        event.count,
      );
    }
  }

  /**
   * A musl lookup that ended on a NODATA answer to a search-list name (events/nodata-stop.ts).
   * The domain label is bounded by the pod's search list (at most 6 domains in resolv.conf).
   */
  private recordNoDataStop(
    event: DnsNoDataEvent,
    attribution: Attribution,
    diagnosis: EventDiagnosis | undefined,
  ): void {
    const stop = noDataStopOf(event, diagnosis);
    if (stop === undefined) return;
    const namespace = attribution.pod?.namespace ?? '';
    const pod = attribution.pod?.name ?? '';
    const key =
      'ns' +
      SEPARATOR +
      stop.domain +
      SEPARATOR +
      attribution.sourceIp +
      SEPARATOR +
      namespace +
      SEPARATOR +
      pod;
    const series =
      this.series.get(key) ??
      this.createSeries(key, this.lookupsStoppedOnNoData, {
        domain: stop.domain,
        source_ip: attribution.sourceIp,
        namespace,
        pod,
      });
    this.count(series, 1);
  }

  /** Series per pod only: a client address alone would be unbounded and is in the counters. */
  /**
   * Lookups of a pod, observed at their query count (Infinity past the probe's cap lands in
   * +Inf). Per pod only, like the latency: an unattributed client would be an unbounded label.
   */
  private observeLookups(event: DnsQueryEvent, namespace: string, pod: string): void {
    const queries = event.queriesPerLookup;
    if (queries === undefined || !pod) return;
    const value = Number.isFinite(queries) ? queries : DNS_LOOKUP_OVERFLOW_QUERIES;
    const labels = { namespace, pod };
    this.lookupLabelsByPod.set(`${namespace}/${pod}`, labels);
    for (let i = 0; i < event.count; i += 1) this.dnsQueriesPerLookup.observe(labels, value);
    // Five outcomes per pod: bounded; counted through the pod's series, removed with it.
    const outcome = event.lookupEnd;
    if (outcome === undefined) return;
    const key = 'lo' + SEPARATOR + outcome + SEPARATOR + namespace + SEPARATOR + pod;
    const series =
      this.series.get(key) ?? this.createSeries(key, this.dnsLookups, { outcome, namespace, pod });
    this.count(series, event.count);
  }

  private observeDuration(event: DnsQueryEvent, namespace: string, pod: string): void {
    const bound = event.latencyBucketSeconds;
    if (bound === undefined || !pod) return;
    // Past the last bucket: any value above it lands in +Inf.
    const value = Number.isFinite(bound) ? bound : DNS_QUERY_OVERFLOW_SECONDS;
    const labels = { namespace, pod };
    this.durationLabelsByPod.set(`${namespace}/${pod}`, labels);
    for (let i = 0; i < event.count; i += 1) this.dnsQueryDuration.observe(labels, value);
  }

  /**
   * DNS drops the kernel counted in its totals but had no room to key (the probe's map was
   * full): counted with direction `unknown` and no client, so that the sum is still every drop.
   */
  recordUncountedDnsDrops(reason: string, count: number): void {
    const key = 'd' + SEPARATOR + reason + SEPARATOR + 'unknown' + SEPARATOR + 'uncounted';
    const series =
      this.series.get(key) ??
      this.createSeries(key, this.dnsDrops, {
        reason,
        direction: 'unknown',
        source_ip: '',
        namespace: '',
        pod: '',
        service: '',
      });
    this.count(series, count);
  }

  /**
   * Insert failures the kernel counted in its totals but had no room to key: counted under
   * their race kind with no client, so that the sum is still every failure.
   */
  recordUncountedInsertFailures(race: string, count: number): void {
    const key = 'i' + SEPARATOR + race + SEPARATOR + 'uncounted';
    const series =
      this.series.get(key) ??
      this.createSeries(key, this.insertFailures, {
        race,
        source_ip: '',
        namespace: '',
        pod: '',
        service: '',
      });
    this.count(series, count);
  }

  /** Queries the DNS-query probe could not track: its pending map was full. */
  recordUntrackedDnsQueries(count: number): void {
    this.dnsQueriesUntracked.inc(count);
  }

  /** Keys of a probe's count map that were not as the probe prints them; their counts are left out. */
  recordRejectedKeys(probe: string, keys: number): void {
    this.keysRejected.inc({ probe }, keys);
  }

  /** Removes every series of a pod that no longer exists. */
  forgetPod(namespace: string, name: string): void {
    const podKey = `${namespace}/${name}`;
    for (const key of this.seriesKeysByPod.get(podKey) ?? []) {
      const series = this.series.get(key);
      if (series !== undefined) this.remove(series);
    }
    this.seriesKeysByPod.delete(podKey);
    const duration = this.durationLabelsByPod.get(podKey);
    if (duration !== undefined) {
      this.dnsQueryDuration.remove(duration);
      this.durationLabelsByPod.delete(podKey);
    }
    const lookups = this.lookupLabelsByPod.get(podKey);
    if (lookups !== undefined) {
      this.dnsQueriesPerLookup.remove(lookups);
      this.lookupLabelsByPod.delete(podKey);
    }
  }

  /**
   * Forgets the source series no event has counted in for the idle time, unless increments
   * are still waiting for a scrape. Scrapes call it (at most every `sweepEveryMs`); returns
   * how many were forgotten.
   */
  sweepIdleSeries(): number {
    const now = this.nowMs();
    this.lastSweepMs = now;
    let forgotten = 0;
    for (const series of this.sourceSeries.values()) {
      // Least recently counted first: the first one not idle ends the sweep.
      if (now - series.lastCountedMs < this.retention.idleMs) break;
      if (series.pending > 0) continue;
      this.remove(series);
      forgotten += 1;
    }
    if (forgotten > 0) this.seriesForgotten.inc({ reason: 'idle' }, forgotten);
    return forgotten;
  }

  /**
   * A pod's counts as its series hold them (read-only): insert failures and resolved clashes by
   * race, DNS drops by reason (both directions summed). Empty objects for a pod with none.
   */
  podCounts(namespace: string, name: string): PodEventCounts {
    const counts = { insertFailures: {}, clashesResolved: {}, dnsDrops: {} } as {
      [K in keyof PodEventCounts]: Record<string, number>;
    };
    for (const key of this.seriesKeysByPod.get(`${namespace}/${name}`) ?? []) {
      const series = this.series.get(key);
      if (series === undefined) continue;
      const [group, label] =
        series.counter === this.insertFailures
          ? [counts.insertFailures, series.labels.race]
          : series.counter === this.clashesResolved
            ? [counts.clashesResolved, series.labels.race]
            : [counts.dnsDrops, series.labels.reason];
      if (label === undefined) continue;
      group[label] = (group[label] ?? 0) + series.total;
    }
    return counts;
  }

  /** How many series the cache holds: bounded like the exported ones. */
  cachedSeries(): number {
    return this.series.size;
  }

  /** How many of them carry no pod label: bounded by `SourceSeriesRetention.maxSeries`. */
  cachedSourceSeries(): number {
    return this.sourceSeries.size;
  }

  /** How many series have counts no scrape has collected yet. */
  seriesAwaitingScrape(): number {
    return this.pendingSeries.size;
  }

  private count(series: Series, occurrences: number): void {
    if (series.pending === 0) {
      this.pendingSeries.add(series);
      // The first event after a scrape stamps the series and moves it to the recent end: a
      // clock read and a move per series and scrape, none per event. Idle time is thus
      // measured from that event, up to one scrape interval before the series' last one.
      if (this.sourceSeries.has(series.key)) {
        series.lastCountedMs = this.nowMs();
        this.sourceSeries.delete(series.key);
        this.sourceSeries.set(series.key, series);
      }
    }
    series.pending += occurrences;
    series.total += occurrences;
  }

  private createSeries(key: string, counter: Counter, labels: Labels): Series {
    const series: Series = { key, counter, labels, pending: 0, total: 0, lastCountedMs: 0 };
    this.series.set(key, series);
    if (labels.pod) {
      const podKey = `${labels.namespace}/${labels.pod}`;
      const keys = this.seriesKeysByPod.get(podKey);
      if (keys) keys.push(key);
      else this.seriesKeysByPod.set(podKey, [key]);
    } else if (labels.source_ip !== undefined) {
      if (this.sourceSeries.size >= this.retention.maxSeries) this.evictLeastRecentlyCounted();
      this.sourceSeries.set(key, series);
    }
    return series;
  }

  private evictLeastRecentlyCounted(): void {
    const oldest = this.sourceSeries.values().next();
    if (oldest.done === true) return;
    this.remove(oldest.value);
    this.seriesForgotten.inc({ reason: 'limit' });
  }

  private remove(series: Series): void {
    this.pendingSeries.delete(series);
    series.counter.remove(series.labels);
    this.series.delete(series.key);
    this.sourceSeries.delete(series.key);
  }
}

/** How many packets an event stands for (docs/probe-events.md, "Counted in the kernel"). */
export function occurrencesOf(event: AttributedEvent['event']): number {
  return event.kind === 'dns_drop' || event.kind === 'insert_failed' ? (event.count ?? 1) : 1;
}

/**
 * Queries per lookup: 1 and 2 (one name, one or both types), then each search-list step of
 * two (up to 6 domains, glibc's and musl's limit, is 14), then a resend's room.
 */
const DNS_QUERIES_PER_LOOKUP_BUCKETS = [1, 2, 4, 6, 8, 10, 12, 14, 16, 24, 32] as const;
/** Observed for a lookup past the probe's cap: above every bucket, so in +Inf. */
const DNS_LOOKUP_OVERFLOW_QUERIES = 33;

function isMeasurement(value: number): boolean {
  return Number.isFinite(value) && value >= 0;
}

/** The DNS-query probe's metrics: answers, unanswered queries and their latency, per client. */
function dnsQueryMetrics(registry: Registry, beforeScrape: () => void) {
  const queries = new Counter({
    name: 'conntrack_observer_dns_queries_total',
    help: 'DNS queries (UDP) a pod sent that were answered, by the answer class (NOERROR, NODATA, NXDOMAIN, SERVFAIL, REFUSED, OTHER) and client; seen in the client namespace.',
    labelNames: ['rcode', 'source_ip', 'namespace', 'pod'],
    registers: [registry],
    collect: beforeScrape,
  });
  const unanswered = new Counter({
    name: 'conntrack_observer_dns_unanswered_queries_total',
    help: 'DNS queries (UDP) no answer matched within the probe period (default 5 s): the client waited its whole timeout. By the cause found in the drops this node saw of the client (race, firewall, no_socket, other_drop, none), client and the Service it asked.',
    labelNames: ['cause', ...ATTRIBUTION_LABELS],
    registers: [registry],
    collect: beforeScrape,
  });
  const parallel = new Counter({
    name: 'conntrack_observer_dns_parallel_queries_total',
    help: 'DNS queries (UDP) a client sent from a socket that had another query pending: A and AAAA sent together (glibc without `options single-request`, musl), the precondition of the conntrack DNAT race. By client; seen in the client namespace.',
    labelNames: ['source_ip', 'namespace', 'pod'],
    registers: [registry],
    collect: beforeScrape,
  });
  // The kernel counts answers in these buckets; each is observed at its upper bound, so
  // the buckets and the count are exact and the sum is an upper estimate.
  const duration = new Histogram({
    name: 'conntrack_observer_dns_query_duration_seconds',
    help: 'Time from a DNS query leaving the pod to its answer arriving in the pod, answered queries only. The sum is an upper estimate (each answer counts at its bucket bound).',
    labelNames: ['namespace', 'pod'],
    buckets: [...DNS_QUERY_DURATION_BUCKETS],
    registers: [registry],
  });
  const perLookup = new Histogram({
    name: 'conntrack_observer_dns_queries_per_lookup',
    help: 'DNS queries (UDP) one lookup of a pod cost: the queries one thread sent for one requested name, search-list names and both types included (ndots:5 with 3 search domains: 8 for a name found nowhere or outside the cluster; an FQDN with a trailing dot: 2). Counted in the kernel; above 32 in +Inf.',
    labelNames: ['namespace', 'pod'],
    buckets: [...DNS_QUERIES_PER_LOOKUP_BUCKETS],
    registers: [registry],
  });
  const lookups = new Counter({
    name: 'conntrack_observer_dns_lookups_total',
    help: 'DNS lookups of a pod (the queries one thread sent for one requested name) by how they ended: answered (an answer carried records), unanswered (none did and a query got no answer: the resolver timed out), nodata (every query answered, none with records, a NODATA among them: musl stopping at a NODATA search-list name), nxdomain (every name tried does not exist), failed (SERVFAIL, REFUSED or another error). Counted in the kernel; observed up to one period (5 s) after the lookup ended.',
    labelNames: ['outcome', 'namespace', 'pod'],
    registers: [registry],
    collect: beforeScrape,
  });
  const untracked = new Counter({
    name: 'conntrack_observer_dns_queries_untracked_total',
    help: "DNS queries the DNS-query probe's pending map had no room for (BPFTRACE_MAP_KEYS_MAX): neither their answer nor their absence is counted.",
    registers: [registry],
  });
  const stoppedOnNoData = new Counter({
    name: 'conntrack_observer_dns_lookups_stopped_on_nodata_total',
    help: "Lookups of a musl pod that ended on a NODATA answer (NOERROR, no record) to a search-list name: musl stops its search there and fails the lookup, glibc goes on. By the search domain whose server answered so, and client. From the probe's NODATA examples (up to 3 a second per namespace), so a lower bound under load.",
    labelNames: ['domain', 'source_ip', 'namespace', 'pod'],
    registers: [registry],
    collect: beforeScrape,
  });
  return {
    queries,
    unanswered,
    parallel,
    duration,
    perLookup,
    lookups,
    untracked,
    stoppedOnNoData,
  };
}

/** How many labelled series the event counters hold, read at each scrape. */
function registerSeriesGauge(
  registry: Registry,
  series: { readonly size: number },
  beforeScrape: () => void,
): void {
  new Gauge({
    name: 'conntrack_observer_event_series',
    help: 'Labelled series the event counters hold (with a pod label or without).',
    registers: [registry],
    collect() {
      beforeScrape();
      this.set(series.size);
    },
  });
}
