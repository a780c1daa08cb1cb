import { Counter, Histogram, type Registry } from 'prom-client';
import type { AttributedEvent } from '../../events/types.js';

const ATTRIBUTION_LABELS = ['source_ip', 'namespace', 'pod', 'service'] as const;

type Labels = Record<string, string>;

/** One labelled series and the increments it has had since the last scrape. */
interface Series {
  readonly counter: Counter;
  readonly labels: Labels;
  pending: number;
}

// Label values are Kubernetes names, addresses and kernel symbols: none holds a NUL.
const SEPARATOR = '\u0000';

/**
 * The event counters. Series carry the pod they are blamed on, so the set of series grows
 * with the pods that ever had a drop; `forgetPod` removes a deleted pod's series to keep the
 * cardinality bounded by the pods that currently (or very recently) exist.
 *
 * Events are counted into a cache of series and handed to prom-client when a scrape collects
 * the counters: prom-client hashes and validates the label object on every `inc`, which costs
 * more than decoding the event. A scrape sees every event recorded before it.
 */
export class EventMetrics {
  private readonly insertFailures: Counter;
  private readonly dnsDrops: Counter;
  private readonly clashesResolved: Counter;
  private readonly unattributed: Counter;
  private readonly snatAllocationSeconds: Histogram;
  private readonly snatAllocationAttempts: Histogram;
  private readonly series = new Map<string, Series>();
  /** Keys in `series` of each pod (namespace/name). */
  private readonly seriesKeysByPod = new Map<string, string[]>();
  /** Series with increments prom-client has not seen yet. */
  private readonly pendingSeries = new Set<Series>();
  private readonly flushPending = (): void => {
    for (const series of this.pendingSeries) {
      series.counter.inc(series.labels, series.pending);
      series.pending = 0;
    }
    this.pendingSeries.clear();
  };

  constructor(registry: Registry) {
    this.insertFailures = new Counter({
      name: 'conntrack_observer_insert_failures_total',
      help: 'Packets the kernel dropped because their conntrack entry lost an insertion race (insert_failed), by race kind and the client it hit.',
      labelNames: ['race', ...ATTRIBUTION_LABELS],
      registers: [registry],
      collect: this.flushPending,
    });
    this.dnsDrops = new Counter({
      name: 'conntrack_observer_dns_drops_total',
      help: 'UDP DNS datagrams (port 53 on either side) the kernel dropped, by drop reason, direction and client.',
      labelNames: ['reason', 'direction', ...ATTRIBUTION_LABELS],
      registers: [registry],
      collect: this.flushPending,
    });
    this.clashesResolved = new Counter({
      name: 'conntrack_observer_clash_resolved_total',
      help: 'Conntrack insertion races the kernel resolved without dropping (kprobe mode only), by race kind and client.',
      labelNames: ['race', ...ATTRIBUTION_LABELS],
      registers: [registry],
      collect: this.flushPending,
    });
    this.unattributed = new Counter({
      name: 'conntrack_observer_unattributed_events_total',
      help: 'Events that could not be attributed to a pod (Kubernetes mode), by event kind. They are still counted in the event metrics with empty pod labels.',
      labelNames: ['kind'],
      registers: [registry],
      collect: this.flushPending,
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
  }

  record({ event, attribution }: AttributedEvent, countUnattributed: boolean): void {
    if (event.kind === 'snat_port_alloc') {
      this.snatAllocationSeconds.observe(event.latencyNs / 1e9);
      this.snatAllocationAttempts.observe(event.attempts);
      return;
    }
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
    this.count(series);
    if (countUnattributed && !pod && !attribution.snatToNode) {
      const key = 'u' + SEPARATOR + event.kind;
      this.count(
        this.series.get(key) ?? this.createSeries(key, this.unattributed, { kind: event.kind }),
      );
    }
  }

  /** Removes every series of a pod that no longer exists. */
  forgetPod(namespace: string, name: string): void {
    const podKey = `${namespace}/${name}`;
    for (const key of this.seriesKeysByPod.get(podKey) ?? []) {
      const series = this.series.get(key);
      if (series === undefined) continue;
      this.pendingSeries.delete(series);
      series.counter.remove(series.labels);
      this.series.delete(key);
    }
    this.seriesKeysByPod.delete(podKey);
  }

  /** How many series the cache holds: bounded like the exported ones. */
  cachedSeries(): number {
    return this.series.size;
  }

  /** How many series have counts no scrape has collected yet. */
  seriesAwaitingScrape(): number {
    return this.pendingSeries.size;
  }

  private count(series: Series): void {
    if (series.pending === 0) this.pendingSeries.add(series);
    series.pending += 1;
  }

  private createSeries(key: string, counter: Counter, labels: Labels): Series {
    const series: Series = { counter, labels, pending: 0 };
    this.series.set(key, series);
    if (labels.pod) {
      const podKey = `${labels.namespace}/${labels.pod}`;
      const keys = this.seriesKeysByPod.get(podKey);
      if (keys) keys.push(key);
      else this.seriesKeysByPod.set(podKey, [key]);
    }
    return series;
  }
}
