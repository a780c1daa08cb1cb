import { pino } from 'pino';
import { Registry } from 'prom-client';
import { standaloneResolver } from '../src/attribute/standalone-resolver.js';
import type { AttributedEvent } from '../src/events/types.js';
import { EventPipeline } from '../src/event-pipeline.js';
import { dnsDrop, insertFailure } from './support/events.js';

const clock = { nowMs: () => 10_000, monotonicNs: () => 5_000_000_000n };

describe('event pipeline', () => {
  it('attributes each event, dates it in wall-clock time and hands it to every sink', () => {
    const seen: AttributedEvent[] = [];
    const pipeline = new EventPipeline({
      resolver: () => standaloneResolver,
      sinks: [{ name: 'collect', handle: (e) => seen.push(e) }],
      clock,
      registry: new Registry(),
      logger: pino({ level: 'silent' }),
    });
    pipeline.handle(insertFailure({ monotonicNs: 4_000_000_000n }));
    pipeline.handle(
      dnsDrop({
        direction: 'response',
        tuple: { srcIp: '10.96.0.10', srcPort: 53, dstIp: '10.244.0.9', dstPort: 5353 },
      }),
    );
    expect(seen.map((e) => [e.attribution.sourceIp, e.wallTimeMs])).toEqual([
      ['10.244.0.2', 9_000],
      ['10.244.0.9', 10_000 - 4_000],
    ]);
  });

  it('keeps feeding the other sinks when one throws, and counts the failure', async () => {
    const registry = new Registry();
    let delivered = 0;
    const pipeline = new EventPipeline({
      resolver: () => standaloneResolver,
      sinks: [
        {
          name: 'broken',
          handle: () => {
            throw new Error('boom');
          },
        },
        {
          name: 'counting',
          handle: () => {
            delivered += 1;
          },
        },
      ],
      clock,
      registry,
      logger: pino({ level: 'silent' }),
    });
    pipeline.handle(insertFailure());
    pipeline.handle(insertFailure());
    expect(delivered).toBe(2);
    const errors = await registry.getSingleMetric('conntrack_observer_sink_errors_total')?.get();
    expect(errors?.values).toEqual([{ value: 2, labels: { sink: 'broken' } }]);
  });
});
