import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { standaloneResolver } from '../../src/attribute/standalone-resolver.js';
import { EventMetrics } from '../../src/sinks/metrics/event-metrics.js';
import { createLineDecoder } from '../../src/decode/decode.js';

function countInto(fixture: string, registry: Registry, metrics: EventMetrics): number {
  const decode = createLineDecoder('kprobe/fixture', (code) => `UNKNOWN_${code}`);
  const lines = readFileSync(new URL(`../fixtures/kprobe/${fixture}`, import.meta.url), 'utf8')
    .split('\n')
    .filter((line) => line !== '');
  let events = 0;
  for (const line of lines) {
    const decoded = decode(line);
    expect(decoded.type).not.toBe('rejected');
    if (decoded.type !== 'event') continue;
    events += 1;
    const attribution = standaloneResolver.attribute(decoded.event, 0);
    metrics.record({ event: decoded.event, attribution, wallTimeMs: 0 }, false);
  }
  return events;
}

async function total(registry: Registry, name: string): Promise<number> {
  const metric = await registry.getSingleMetric(name)?.get();
  return (metric?.values ?? []).reduce((sum, value) => sum + value.value, 0);
}

describe('kprobe-mode output', () => {
  it('counts a resolved clash and a dropping failure in two different metrics, never one', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const resolved = countInto('clash-resolved-dnat.jsonl', registry, metrics);
    const dropped = countInto('insert-failed-snat.jsonl', registry, metrics);
    expect(resolved).toBeGreaterThan(0);
    expect(dropped).toBeGreaterThan(0);
    expect(await total(registry, 'conntrack_observer_clash_resolved_total')).toBe(resolved);
    expect(await total(registry, 'conntrack_observer_insert_failures_total')).toBe(dropped);
  });

  it('turns SNAT port allocations into latency and attempt histograms', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const allocations = countInto('snat-port-alloc.jsonl', registry, metrics);
    const attempts = await registry
      .getSingleMetric('conntrack_observer_snat_port_allocation_attempts')
      ?.get();
    const count = attempts?.values.find((value) =>
      (value as { metricName?: string }).metricName?.endsWith('_count'),
    );
    expect(allocations).toBeGreaterThan(0);
    expect(count?.value).toBe(allocations);
    expect(await total(registry, 'conntrack_observer_insert_failures_total')).toBe(0);
  });
});
