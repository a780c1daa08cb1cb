import { readFileSync } from 'node:fs';
import { Registry } from 'prom-client';
import { standaloneResolver } from '../../src/attribute/standalone-resolver.js';
import { EventMetrics } from '../../src/sinks/metrics/event-metrics.js';
import { createLineDecoder } from '../../src/decode/decode.js';
import { InsertFailureCounts } from '../../src/decode/insert-failure-counts.js';
import type { ProbeEvent } from '../../src/events/types.js';

function fixtureLines(fixture: string): string[] {
  return readFileSync(new URL(`../fixtures/kprobe/${fixture}`, import.meta.url), 'utf8')
    .split('\n')
    .filter((line) => line !== '');
}

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

  it('reads IPv6 records with their family, addresses in canonical text and races classified', () => {
    const decode = createLineDecoder('kprobe/fixture', (code) => `UNKNOWN_${code}`);
    const events = ['clash-resolved-dnat-ipv6.jsonl', 'snat-port-alloc-ipv6.jsonl']
      .flatMap(fixtureLines)
      .map(decode)
      .flatMap((decoded) => (decoded.type === 'event' ? [decoded.event] : []));
    expect(events).toEqual([
      expect.objectContaining({
        kind: 'clash_resolved',
        race: 'dnat',
        original: { srcIp: 'fd00:10:244::5', srcPort: 41234, dstIp: 'fd00:10:96::a', dstPort: 53 },
      }),
      expect.objectContaining({
        kind: 'snat_port_alloc',
        attempts: 3,
        translatedIp: '2001:db8::1',
        translatedPort: 40002,
      }),
    ]);
  });

  it('counts an IPv6 SNAT race from its maps, the example record counting nothing', async () => {
    const registry = new Registry();
    const metrics = new EventMetrics(registry);
    const decode = createLineDecoder('kprobe/conntrack-confirm', (code) => `UNKNOWN_${code}`);
    const tracker = new InsertFailureCounts({
      probe: 'kprobe/conntrack-confirm',
      monotonicNs: () => 0n,
    });
    const events: ProbeEvent[] = [];
    for (const decoded of fixtureLines('insert-failed-snat-ipv6.jsonl').map(decode)) {
      expect(decoded.type).not.toBe('rejected');
      if (decoded.type === 'event') events.push(decoded.event);
      if (decoded.type === 'counts') {
        const update = tracker.observe(decoded.map, decoded.entries);
        expect(update.rejectedKeys).toEqual([]);
        events.push(...update.events);
      }
    }
    for (const event of events) {
      const attribution = standaloneResolver.attribute(event, 0);
      metrics.record({ event, attribution, wallTimeMs: 0 }, false);
    }
    expect(
      events.map((event) => (event.kind === 'insert_failed' ? event.race : event.kind)),
    ).toEqual(['snat', 'snat']);
    expect(events[1]).toMatchObject({
      original: { srcIp: 'fd00:10:244::2', dstIp: '2001:db8::53', dstPort: 53 },
      reply: { srcIp: '2001:db8::53', srcPort: 53, dstIp: '2001:db8::1' },
    });
    // The map's 2, not the example's 0 + the map's 2.
    expect(await total(registry, 'conntrack_observer_insert_failures_total')).toBe(2);
  });
});
