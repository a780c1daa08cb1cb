import { Registry } from 'prom-client';
import { EventMetrics } from '../../src/metrics/event-metrics.js';
import { attributed, dnsDrop, insertFailure, podA } from '../support/events.js';

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
});
