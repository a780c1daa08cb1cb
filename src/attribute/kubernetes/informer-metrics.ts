import { Counter, Gauge, type Registry } from 'prom-client';

/** The informers' health, one series per watched resource. */
export class InformerMetrics {
  readonly restarts: Counter<'resource'>;
  readonly synced: Gauge<'resource'>;
  readonly lists: Counter<'resource'>;
  readonly watches: Counter<'resource'>;
  readonly objects: Gauge<'resource'>;
  readonly dropped: Counter<'resource'>;

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
    this.lists = new Counter({
      name: 'conntrack_observer_k8s_informer_lists_total',
      help: 'Full lists (all pages) started: the first one, and a relist after 410 Gone or a failed list. A resumed watch is not a list.',
      labelNames: ['resource'],
      registers: [registry],
    });
    this.watches = new Counter({
      name: 'conntrack_observer_k8s_informer_watches_total',
      help: 'Watch requests: after each list, and each resume from the last resourceVersion.',
      labelNames: ['resource'],
      registers: [registry],
    });
    this.objects = new Gauge({
      name: 'conntrack_observer_k8s_informer_objects',
      help: 'Objects the informer holds (in their lean form).',
      labelNames: ['resource'],
      registers: [registry],
    });
    this.dropped = new Counter({
      name: 'conntrack_observer_k8s_informer_objects_dropped_total',
      help: 'Listed or watched objects not kept because the informer held its bound of objects.',
      labelNames: ['resource'],
      registers: [registry],
    });
    for (const resource of resources) {
      this.restarts.inc({ resource }, 0);
      this.synced.set({ resource }, 0);
      this.lists.inc({ resource }, 0);
      this.watches.inc({ resource }, 0);
      this.objects.set({ resource }, 0);
      this.dropped.inc({ resource }, 0);
    }
  }
}
