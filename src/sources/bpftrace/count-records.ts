import type { Logger } from 'pino';
import { DnsDropCounts } from '../../decode/dns-drop-counts.js';
import { DnsQueryCounts, isDnsQueryMap } from '../../decode/dns-query-counts.js';
import { InsertFailureCounts } from '../../decode/insert-failure-counts.js';
import type { CountEntry } from '../../decode/decoded-line.js';
import type { DropReasonTable } from '../../detect/drop-reasons.js';
import type { ProbeEvent } from '../../events/types.js';
import type { Clock } from '../../shared/clock.js';
import type { MapRecord } from './probe-lines.js';

/** What the count maps could not turn into events, counted where the operator sees it. */
export interface CountShortfalls {
  recordUntrackedDnsQueries(count: number): void;
  recordUncountedDnsDrops(reason: string, count: number): void;
  recordUncountedInsertFailures(race: string, count: number): void;
  recordRejectedKeys(probe: string, keys: number): void;
}

export interface CountRecordsOptions {
  readonly dropReasons: DropReasonTable;
  readonly clock: Clock;
  readonly onEvent: (event: ProbeEvent) => void;
  readonly shortfalls: CountShortfalls;
  readonly logger: Logger;
}

function trackersOf(probe: string, options: CountRecordsOptions) {
  const monotonicNs = (): bigint => options.clock.monotonicNs();
  return {
    dnsDrops: new DnsDropCounts({
      probe,
      reasonName: (code) => options.dropReasons.nameOf(code),
      monotonicNs,
    }),
    insertFailures: new InsertFailureCounts({ probe, monotonicNs }),
    queries: new DnsQueryCounts({ probe, monotonicNs }),
  };
}

type Trackers = ReturnType<typeof trackersOf>;

/**
 * The probes' printed count maps, turned into events by the trackers of each probe (a new
 * bpftrace run starts them over; each reads only its own maps); occurrences the kernel counted
 * without room for their key are counted as such.
 */
export class CountRecords {
  private readonly byProbe = new Map<string, { run: number; trackers: Trackers }>();

  constructor(private readonly options: CountRecordsOptions) {}

  /** The supervisor's `onCounts`. */
  readonly handle = (record: MapRecord, probe: string, run: number): void => {
    let state = this.byProbe.get(probe);
    if (state === undefined || state.run !== run) {
      state = { run, trackers: trackersOf(probe, this.options) };
      this.byProbe.set(probe, state);
    }
    if (isDnsQueryMap(record.map)) {
      if (record.type === 'map_cleared') state.trackers.queries.cleared(record.map);
      else this.queries(state.trackers.queries, record.map, record.entries, probe);
    } else {
      this.drops(state.trackers, record, probe);
    }
  };

  private queries(
    queries: DnsQueryCounts,
    map: string,
    entries: readonly CountEntry[],
    probe: string,
  ): void {
    const { onEvent, shortfalls, logger } = this.options;
    const update = queries.observe(map, entries);
    for (const event of update.events) onEvent(event);
    if (update.untracked > 0) shortfalls.recordUntrackedDnsQueries(update.untracked);
    const unanswered = update.events.filter((event) => event.outcome === 'unanswered');
    // One line a period, not one per query: the metrics and Events say who.
    if (unanswered.length > 0) {
      logger.info(
        {
          probe,
          unanswered: unanswered.reduce((sum, event) => sum + event.count, 0),
          clients: unanswered.length,
        },
        'DNS queries left unanswered for a whole timeout period',
      );
    }
    this.rejectedKeys(probe, map, update.rejectedKeys);
  }

  private drops({ dnsDrops, insertFailures }: Trackers, record: MapRecord, probe: string): void {
    const owner = dnsDrops.owns(record.map)
      ? dnsDrops
      : insertFailures.owns(record.map)
        ? insertFailures
        : undefined;
    if (owner === undefined) return;
    if (record.type === 'map_cleared') {
      owner.cleared(record.map);
      return;
    }
    const { onEvent, shortfalls } = this.options;
    const update = owner.observe(record.map, record.entries);
    for (const event of update.events) onEvent(event);
    for (const [name, count] of update.uncounted) {
      if (owner === dnsDrops) shortfalls.recordUncountedDnsDrops(name, count);
      else shortfalls.recordUncountedInsertFailures(name, count);
    }
    this.rejectedKeys(probe, record.map, update.rejectedKeys);
  }

  private rejectedKeys(probe: string, map: string, keys: readonly string[]): void {
    if (keys.length === 0) return;
    this.options.shortfalls.recordRejectedKeys(probe, keys.length);
    this.options.logger.warn(
      { probe, map, keys: keys.slice(0, 3) },
      'count map keys not as the probe prints them; their counts are left out',
    );
  }
}
