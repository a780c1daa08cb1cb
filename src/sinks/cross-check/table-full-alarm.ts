import type { Logger } from 'pino';
import type { ConntrackReading } from '../../sources/kernel-stats/conntrack-counters.js';
import type { TableFullReport } from '../kubernetes-events/kubernetes-event-sink.js';
import { TableFullDetector } from './table-full-detector.js';

/** Where a full table is reported besides the log: the Node's Events, with Kubernetes. */
export interface TableFullEvents {
  recordTableFull(report: TableFullReport): void;
}

export interface TableFullAlarmOptions {
  readonly logger: Logger;
  readonly events?: TableFullEvents;
  /** Wall-clock milliseconds, for the Event's time. */
  readonly nowMs: () => number;
}

/**
 * Fed every kernel reading: a full table is no probe event (the kernel drops the flow before
 * any probe sees it), so it is warned about and posted from here rather than through the
 * event pipeline.
 */
export class TableFullAlarm {
  private readonly detector = new TableFullDetector();

  constructor(private readonly options: TableFullAlarmOptions) {}

  observe(reading: ConntrackReading): void {
    const full = this.detector.observe(reading);
    if (!full) return;
    this.options.logger.warn(full, 'conntrack table full: new flows are being dropped');
    this.options.events?.recordTableFull({ ...full, wallTimeMs: this.options.nowMs() });
  }
}
