import type { ConntrackReading } from '../../sources/kernel-stats/conntrack-counters.js';

export interface TableFullObservation {
  readonly entries: number;
  readonly limit: number;
  /** New flows dropped for want of room since the previous reading. */
  readonly drops: number;
}

// The kernel counts a packet dropped because the table is full (after early_drop found
// nothing to evict) in `drop`; an insertion race counts in both `drop` and `insert_failed`.
// So the table-full drops are the difference, and only when the table is (nearly) full.
const FULL_RATIO = 0.95;

/** Notices a full conntrack table from successive kernel readings. */
export class TableFullDetector {
  private previous: ConntrackReading | undefined;

  observe(reading: ConntrackReading): TableFullObservation | undefined {
    const previous = this.previous;
    this.previous = reading;
    if (!previous || reading.reset || reading.limit === undefined || reading.limit === 0) {
      return undefined;
    }
    if (reading.entries < reading.limit * FULL_RATIO) return undefined;
    const delta = (column: string) =>
      (reading.totals.get(column) ?? 0) - (previous.totals.get(column) ?? 0);
    const drops = delta('drop') - delta('insert_failed');
    return drops > 0 ? { entries: reading.entries, limit: reading.limit, drops } : undefined;
  }
}
