import { Counter, Histogram, type Registry } from 'prom-client';
import type { AttributedEvent } from '../events/types.js';

const ATTRIBUTION_LABELS = ['source_ip', 'namespace', 'pod', 'service'] as const;

type Labels = Record<string, string>;

/**
 * The event counters. Series carry the pod they are blamed on, so the set of series grows
 * with the pods that ever had a drop; `forgetPod` removes a deleted pod's series to keep the
 * cardinality bounded by the pods that currently (or very recently) exist.
 */
export class EventMetrics {
  private readonly insertFailures: Counter;
  private readonly dnsDrops: Counter;
  private readonly clashesResolved: Counter;
  private readonly unattributed: Counter;
  private readonly snatAllocationSeconds: Histogram;
  private readonly snatAllocationAttempts: Histogram;
  private readonly seriesByPod = new Map<string, { counter: Counter; labels: Labels }[]>();
  private readonly seenSeries = new Set<string>();

  constructor(registry: Registry) {
    this.insertFailures = new Counter({
      name: 'conntrack_observer_insert_failures_total',
      help: 'Packets the kernel dropped because their conntrack entry lost an insertion race (insert_failed), by race kind and the client it hit.',
      labelNames: ['race', ...ATTRIBUTION_LABELS],
      registers: [registry],
    });
    this.dnsDrops = new Counter({
      name: 'conntrack_observer_dns_drops_total',
      help: 'UDP DNS datagrams (port 53 on either side) the kernel dropped, by drop reason, direction and client.',
      labelNames: ['reason', 'direction', ...ATTRIBUTION_LABELS],
      registers: [registry],
    });
    this.clashesResolved = new Counter({
      name: 'conntrack_observer_clash_resolved_total',
      help: 'Conntrack insertion races the kernel resolved without dropping (kprobe mode only), by race kind and client.',
      labelNames: ['race', ...ATTRIBUTION_LABELS],
      registers: [registry],
    });
    this.unattributed = new Counter({
      name: 'conntrack_observer_unattributed_events_total',
      help: 'Events that could not be attributed to a pod (Kubernetes mode), by event kind. They are still counted in the event metrics with empty pod labels.',
      labelNames: ['kind'],
      registers: [registry],
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
    const labels: Labels = {
      source_ip: attribution.sourceIp,
      namespace: attribution.pod?.namespace ?? '',
      pod: attribution.pod?.name ?? '',
      service: attribution.service
        ? `${attribution.service.namespace}/${attribution.service.name}`
        : '',
    };
    if (event.kind === 'snat_port_alloc') {
      this.snatAllocationSeconds.observe(event.latencyNs / 1e9);
      this.snatAllocationAttempts.observe(event.attempts);
      return;
    }
    let counter: Counter;
    if (event.kind === 'dns_drop') {
      counter = this.dnsDrops;
      labels.reason = event.reason;
      labels.direction = event.direction;
    } else {
      counter = event.kind === 'insert_failed' ? this.insertFailures : this.clashesResolved;
      labels.race = event.race;
    }
    counter.inc(labels);
    this.remember(counter, labels);
    if (countUnattributed && !attribution.pod && !attribution.snatToNode) {
      this.unattributed.inc({ kind: event.kind });
    }
  }

  /** Removes every series of a pod that no longer exists. */
  forgetPod(namespace: string, name: string): void {
    const key = `${namespace}/${name}`;
    for (const { counter, labels } of this.seriesByPod.get(key) ?? []) {
      counter.remove(labels);
      this.seenSeries.delete(seriesKey(counter, labels));
    }
    this.seriesByPod.delete(key);
  }

  private remember(counter: Counter, labels: Labels): void {
    if (!labels.pod) return;
    const key = seriesKey(counter, labels);
    if (this.seenSeries.has(key)) return;
    this.seenSeries.add(key);
    const podKey = `${labels.namespace}/${labels.pod}`;
    const list = this.seriesByPod.get(podKey) ?? [];
    list.push({ counter, labels: { ...labels } });
    this.seriesByPod.set(podKey, list);
  }
}

function seriesKey(counter: Counter, labels: Labels): string {
  const name = (counter as unknown as { name: string }).name;
  return `${name}|${Object.keys(labels)
    .sort()
    .map((key) => `${key}=${labels[key]}`)
    .join(',')}`;
}
