import { Registry } from 'prom-client';
import { EventMetrics } from '../../../src/sinks/metrics/event-metrics.js';
import { attributed, dnsDrop, insertFailure, podA } from '../../support/events.js';

async function valuesOf(registry: Registry, name: string) {
  const metric = await registry.getSingleMetric(name)?.get();
  return metric?.values ?? [];
}

describe('event metrics', () => {
  it('counts insert failures by race kind and client, once per event', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure()), false);
    metrics.record(attributed(insertFailure()), false);
    metrics.record(attributed(insertFailure({ race: 'dnat' })), false);
    const values = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(values).toEqual(
      expect.arrayContaining([
        {
          value: 2,
          labels: { race: 'snat', source_ip: '10.244.0.2', namespace: '', pod: '', service: '' },
        },
        {
          value: 1,
          labels: { race: 'dnat', source_ip: '10.244.0.2', namespace: '', pod: '', service: '' },
        },
      ]),
    );
    expect(values).toHaveLength(2);
  });

  it('counts DNS drops by reason and direction and never as insert failures', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(dnsDrop(), undefined, '10.244.0.3'), false);
    metrics.record(attributed(dnsDrop({ reason: 'NO_SOCKET' }), undefined, '10.244.0.3'), false);
    const drops = await valuesOf(registry, 'conntrack_observer_dns_drops_total');
    expect(drops.map((v) => [v.labels.reason, v.labels.direction, v.value])).toEqual([
      ['NETFILTER_DROP', 'query', 1],
      ['NO_SOCKET', 'query', 1],
    ]);
    expect(await valuesOf(registry, 'conntrack_observer_insert_failures_total')).toEqual([]);
  });

  it('counts a resolved clash apart from an insert failure', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed({ ...insertFailure(), kind: 'clash_resolved' }), false);
    expect(await valuesOf(registry, 'conntrack_observer_clash_resolved_total')).toHaveLength(1);
    expect(await valuesOf(registry, 'conntrack_observer_insert_failures_total')).toEqual([]);
  });

  it('counts events without a pod as unattributed only when pods are expected', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure()), false);
    expect(await valuesOf(registry, 'conntrack_observer_unattributed_events_total')).toEqual([]);
    metrics.record(attributed(insertFailure()), true);
    metrics.record(attributed(insertFailure(), podA), true);
    expect(await valuesOf(registry, 'conntrack_observer_unattributed_events_total')).toEqual([
      { value: 1, labels: { kind: 'insert_failed' } },
    ]);
  });

  it('removes every series of a forgotten pod and keeps the others', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const other = { ...podA, name: 'other', uid: 'uid-o' };
    metrics.record(attributed(insertFailure(), podA), true);
    metrics.record(attributed(dnsDrop(), podA), true);
    metrics.record(attributed(insertFailure(), other), true);
    metrics.forgetPod('shop', 'cart-7d9f');
    const failures = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(failures.map((v) => v.labels.pod)).toEqual(['other']);
    expect(await valuesOf(registry, 'conntrack_observer_dns_drops_total')).toEqual([]);
  });

  it('shows every event recorded between scrapes, and only once', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure(), podA), true);
    const first = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(first.map((v) => v.value)).toEqual([1]);
    metrics.record(attributed(insertFailure(), podA), true);
    metrics.record(attributed(insertFailure(), podA), true);
    expect(await registry.metrics()).toContain(
      'conntrack_observer_insert_failures_total{race="snat",source_ip="10.244.0.2",namespace="shop",pod="cart-7d9f",service=""} 3',
    );
    const again = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(again.map((v) => v.value)).toEqual([3]);
  });

  it('drops the cached series of a forgotten pod, including counts no scrape has seen yet', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure(), podA), true);
    metrics.record(attributed(dnsDrop(), podA), true);
    metrics.record(attributed(insertFailure()), true);
    expect(metrics.cachedSeries()).toBe(4); // two of the pod, one by IP, one unattributed
    metrics.forgetPod('shop', 'cart-7d9f');
    expect(metrics.cachedSeries()).toBe(2);
    const failures = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(failures.map((v) => [v.labels.pod, v.value])).toEqual([['', 1]]);
    expect(await valuesOf(registry, 'conntrack_observer_dns_drops_total')).toEqual([]);
  });

  it('counts a pod that comes back under the same name from zero', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    metrics.record(attributed(insertFailure(), podA), true);
    metrics.record(attributed(insertFailure(), podA), true);
    await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    metrics.forgetPod('shop', 'cart-7d9f');
    metrics.record(attributed(insertFailure(), { ...podA, uid: 'uid-a2' }), true);
    const failures = await valuesOf(registry, 'conntrack_observer_insert_failures_total');
    expect(failures.map((v) => [v.labels.pod, v.value])).toEqual([['cart-7d9f', 1]]);
    expect(metrics.cachedSeries()).toBe(1);
  });

  it('keeps the cache bounded by the pods still known after many come and go', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    for (let i = 0; i < 500; i += 1) {
      const pod = { ...podA, name: `job-${i}`, uid: `uid-${i}` };
      metrics.record(attributed(insertFailure(), pod, `10.244.1.${i % 250}`), true);
      metrics.record(attributed(dnsDrop({ reason: 'NO_SOCKET' }), pod), true);
      if (i >= 10) metrics.forgetPod('shop', `job-${i - 10}`);
    }
    expect(metrics.cachedSeries()).toBe(20);
    expect(metrics.seriesAwaitingScrape()).toBe(20);
    expect(await valuesOf(registry, 'conntrack_observer_insert_failures_total')).toHaveLength(10);
    expect(await valuesOf(registry, 'conntrack_observer_dns_drops_total')).toHaveLength(10);
  });
});
