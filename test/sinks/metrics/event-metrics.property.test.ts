import fc from 'fast-check';
import { Registry } from 'prom-client';

import type { AttributedEvent, ProbeEvent } from '../../../src/events/types.js';
import { EventMetrics } from '../../../src/sinks/metrics/event-metrics.js';
import { propertyParameters } from '../../support/property.js';

// Whatever the type says, a number may be anything a double holds.
const anyNumber = fc.oneof(
  fc.double(),
  fc.constantFrom(Number.NaN, Infinity, -Infinity, -1, -0, 0, 0.5, 2 ** 53, Number.MAX_VALUE),
  fc.integer(),
);
const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom('', '"', '\\', '\n', '{}', 'a"b\\c\nd'),
);
const tuple = fc.record({ srcIp: anyText, srcPort: anyNumber, dstIp: anyText, dstPort: anyNumber });
const base = {
  probe: anyText,
  monotonicNs: fc.bigInt(),
  cpu: anyNumber,
  netnsInode: anyNumber,
  protocol: fc.constantFrom('udp' as const, 'tcp' as const, 'icmp' as const, 'other' as const),
};
const race = fc.constantFrom(
  'snat' as const,
  'dnat' as const,
  'snat_dnat' as const,
  'none' as const,
);

const anyEvent: fc.Arbitrary<ProbeEvent> = fc.oneof(
  fc.record({
    ...base,
    kind: fc.constantFrom('insert_failed' as const, 'clash_resolved' as const),
    ctStatus: anyNumber,
    original: tuple,
    reply: tuple,
    race,
  }),
  fc.record({
    ...base,
    kind: fc.constant('dns_drop' as const),
    reason: anyText,
    direction: fc.constantFrom('query' as const, 'response' as const),
    tuple,
    location: anyText,
  }),
  fc.record({
    ...base,
    kind: fc.constant('snat_port_alloc' as const),
    latencyNs: anyNumber,
    attempts: anyNumber,
    original: tuple,
    translatedIp: anyText,
    translatedPort: anyNumber,
  }),
);

const anyAttributed: fc.Arbitrary<AttributedEvent> = fc.record({
  event: anyEvent,
  attribution: fc.record(
    {
      sourceIp: anyText,
      netnsInode: anyNumber,
      pod: fc.record({
        namespace: anyText,
        name: anyText,
        uid: anyText,
        hostNetwork: fc.boolean(),
      }),
      service: fc.record({ namespace: anyText, name: anyText }),
      snatToNode: fc.boolean(),
    },
    { requiredKeys: ['sourceIp', 'netnsInode'] },
  ),
  wallTimeMs: anyNumber,
});

const COUNTERS = {
  insert_failed: 'conntrack_observer_insert_failures_total',
  clash_resolved: 'conntrack_observer_clash_resolved_total',
  dns_drop: 'conntrack_observer_dns_drops_total',
} as const;

async function total(registry: Registry, name: string): Promise<number> {
  const metric = await registry.getSingleMetric(name)!.get();
  return metric.values.reduce((sum, sample) => sum + sample.value, 0);
}

describe('event metrics on any event (property)', () => {
  it('never throws, always scrapes, and counts every event once or rejects its values', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(anyAttributed, { maxLength: 40 }),
        fc.boolean(),
        fc.array(fc.nat({ max: 40 }), { maxLength: 3 }),
        fc.constantFrom(8, 10_000),
        async (events, kubernetes, scrapeAfter, maxSeries) => {
          const registry = new Registry();
          let now = 0;
          const metrics = new EventMetrics(registry, {
            nowMs: () => now,
            retention: { idleMs: 60_000, maxSeries, sweepEveryMs: 1_000 },
          });
          const scrapes = new Set(scrapeAfter);
          for (const [index, event] of events.entries()) {
            metrics.record(event, kubernetes);
            if (scrapes.has(index)) {
              now += 500;
              await registry.metrics();
            }
          }
          const text = await registry.metrics();
          expect(typeof text).toBe('string');

          const byKind = (kind: ProbeEvent['kind']) =>
            events.filter(({ event }) => event.kind === kind).length;
          const forgotten = await total(
            registry,
            'conntrack_observer_event_series_forgotten_total',
          );
          // Evicted series take their uncollected increments with them; else every event counts.
          if (forgotten === 0) {
            for (const [kind, name] of Object.entries(COUNTERS)) {
              expect(await total(registry, name)).toBe(byKind(kind as ProbeEvent['kind']));
            }
          }
          const snat = events.filter(({ event }) => event.kind === 'snat_port_alloc');
          const measurable = snat.filter(({ event }) => {
            if (event.kind !== 'snat_port_alloc') return false;
            return [event.latencyNs, event.attempts].every((v) => Number.isFinite(v) && v >= 0);
          });
          const observed = await registry
            .getSingleMetric('conntrack_observer_snat_port_allocation_attempts')!
            .get();
          const count = observed.values.find((sample) =>
            String((sample as { metricName?: string }).metricName).endsWith('_count'),
          );
          expect(count?.value ?? 0).toBe(measurable.length);
          expect(await total(registry, 'conntrack_observer_event_values_rejected_total')).toBe(
            snat.length - measurable.length,
          );
          expect(metrics.cachedSourceSeries()).toBeLessThanOrEqual(maxSeries);
        },
      ),
      propertyParameters(300),
    );
  });
});
