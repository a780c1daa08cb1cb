import { Counter, Gauge, type Registry } from 'prom-client';

/** The informers' health, one series per watched resource. */
export class InformerMetrics {
  readonly restarts: Counter<'resource'>;
  readonly synced: Gauge<'resource'>;

  constructor(registry: Registry, resources: readonly string[]) {
    this.restarts = new Counter({
      name: 'conntrack_observer_k8s_informer_restarts_total',
      help: 'Times an informer was restarted after a list or watch error other than 410 Gone.',
      labelNames: ['resource'],
      registers: [registry],
    });
    this.synced = new Gauge({
      name: 'conntrack_observer_k8s_informer_synced',
      help: '1 once the informer has completed its first list (its cache is then served, even while it reconnects).',
      labelNames: ['resource'],
      registers: [registry],
    });
    for (const resource of resources) {
      this.restarts.inc({ resource }, 0);
      this.synced.set({ resource }, 0);
    }
  }
}
