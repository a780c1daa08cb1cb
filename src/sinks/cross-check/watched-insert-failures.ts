import type { EventSink } from '../../event-pipeline.js';
import type { AttributedEvent } from '../../events/types.js';

/** The side of the cross-check that counts what the probes reported. */
export interface ObservedInsertFailures {
  recordObserved(count?: number): void;
}

/**
 * Feeds the cross-check the insert failures the probes saw in the watched namespace: the
 * kernel's insert_failed there is what they must match; failures in other namespaces are
 * counted by those namespaces' own counters, not this one.
 */
export class WatchedInsertFailures implements EventSink {
  readonly name = 'cross-check';

  constructor(
    private readonly options: {
      readonly watchedNetnsInode: number;
      readonly crossCheck: ObservedInsertFailures;
    },
  ) {}

  handle({ event }: AttributedEvent): void {
    if (event.kind === 'insert_failed' && event.netnsInode === this.options.watchedNetnsInode) {
      this.options.crossCheck.recordObserved(event.count ?? 1);
    }
  }
}
