import { Counter, type Registry } from 'prom-client';

/** Why an occurrence never reached an Event's count. */
export type EventDropCause =
  /** Too many distinct Events were waiting to be written. */
  | 'queue_full'
  /** The object already got its share of new Events (per-object budget, as client-go's spam filter). */
  | 'rate_limited'
  /** The API kept failing (429, 5xx, network) through every retry. */
  | 'api_error'
  /** The API refused the write for good (400, 403, 422…): retrying cannot help. */
  | 'api_rejected'
  /** The agent stopped before the write could be made. */
  | 'shutdown';

export const EVENT_DROP_CAUSES: readonly EventDropCause[] = [
  'queue_full',
  'rate_limited',
  'api_error',
  'api_rejected',
  'shutdown',
];

export class EventRecorderMetrics {
  readonly written: Counter<'reason' | 'operation'>;
  readonly dropped: Counter<'cause'>;

  constructor(registry: Registry) {
    this.written = new Counter({
      name: 'conntrack_observer_k8s_events_written_total',
      help: 'Kubernetes Event writes that succeeded, by Event reason and operation (create, or patch of the count).',
      labelNames: ['reason', 'operation'],
      registers: [registry],
    });
    this.dropped = new Counter({
      name: 'conntrack_observer_k8s_events_dropped_total',
      help: 'Occurrences that never reached the count of a Kubernetes Event, by cause.',
      labelNames: ['cause'],
      registers: [registry],
    });
    for (const cause of EVENT_DROP_CAUSES) this.dropped.inc({ cause }, 0);
  }
}
