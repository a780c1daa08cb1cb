import { Counter, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import { WallTimeConverter, type Clock } from './shared/clock.js';
import type { AttributedEvent, AttributionResolver, ProbeEvent } from './events/types.js';
import type { EventDiagnosis } from './events/diagnosis.js';
import { advised } from './diagnose/remedies.js';

/** A consumer of attributed events. A sink that throws fails alone. */
export interface EventSink {
  readonly name: string;
  handle(attributed: AttributedEvent): void;
}

export interface EventPipelineOptions {
  /**
   * The resolver for each event. The agent passes one chosen at start: the Kubernetes one
   * (usable at once, complete once its informers have listed) or the standalone one.
   */
  resolver: () => AttributionResolver;
  sinks: readonly EventSink[];
  /** Looks the pod's and node's diagnosis up; synchronous, from a cache filled elsewhere. */
  diagnose?: (
    event: ProbeEvent,
    attributed: Omit<AttributedEvent, 'diagnosis' | 'advice'>,
  ) => EventDiagnosis;
  clock: Clock;
  registry: Registry;
  logger: Logger;
}

/** attribute → diagnose and advise → sinks. Synchronous, so the order of events is kept. */
export class EventPipeline {
  private readonly sinkErrors: Counter;
  private readonly sinkErrorLogged = new Set<string>();
  private readonly wallTime: WallTimeConverter;

  constructor(private readonly options: EventPipelineOptions) {
    this.sinkErrors = new Counter({
      name: 'conntrack_observer_sink_errors_total',
      help: 'Events a sink (metrics, log, Kubernetes events) failed to handle; the other sinks still got them.',
      labelNames: ['sink'],
      registers: [options.registry],
    });
    this.wallTime = new WallTimeConverter(options.clock);
  }

  handle(event: ProbeEvent): void {
    const wallTimeMs = this.wallTime.wallTimeOf(event.monotonicNs);
    const attribution = this.options.resolver().attribute(event, wallTimeMs);
    const base = { event, attribution, wallTimeMs };
    const attributed = advised(base, this.options.diagnose?.(event, base));
    for (const sink of this.options.sinks) {
      try {
        sink.handle(attributed);
      } catch (error) {
        this.sinkErrors.inc({ sink: sink.name });
        // One log line per failing sink until it recovers would need state per error; one per
        // sink for the agent's life is enough to point at the bug without flooding.
        if (!this.sinkErrorLogged.has(sink.name)) {
          this.sinkErrorLogged.add(sink.name);
          this.options.logger.error({ err: error, sink: sink.name }, 'event sink failed');
        }
      }
    }
  }
}
