import { readFileSync } from 'node:fs';

import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Lifecycle } from '../../shared/lifecycle.js';
import { unrefTimers, type Timers } from '../../shared/timers.js';

import {
  CONNTRACK_STAT_PATH,
  ENTRIES_COLUMN,
  parseConntrackStatFile,
  type ConntrackStatSnapshot,
} from './conntrack-stat-file.js';

/** Global (not per namespace): the size the conntrack table may grow to. */
export const CONNTRACK_MAX_PATH = '/proc/sys/net/netfilter/nf_conntrack_max';

/** One poll of the kernel's counters, as exported. */
export interface ConntrackReading {
  /**
   * Per column (entries excepted): the kernel's total over all CPUs, plus 2^32 for every
   * wrap of a CPU's 32-bit counter seen since the last reset.
   */
  readonly totals: ReadonlyMap<string, number>;
  readonly entries: number;
  readonly hasClashResolve: boolean;
  /** True when the counters went backwards: a new namespace behind the path, a new count. */
  readonly reset: boolean;
  /** nf_conntrack_max at this poll; undefined when it could not be read. */
  readonly limit?: number;
}

export type ReadText = (path: string) => Promise<string>;

export interface ConntrackCountersOptions {
  readonly registry: Registry;
  readonly logger: Logger;
  /** Default `/proc/net/stat/nf_conntrack`; `/proc/<pid>/net/stat/nf_conntrack` for another namespace. */
  readonly statPath?: string;
  readonly limitPath?: string;
  readonly intervalMs?: number;
  /** Runs the poll; default unref'd real timers. */
  readonly timers?: Pick<Timers, 'every'>;
  readonly readText?: ReadText;
  /** Called after every successful poll, e.g. to feed the unexplained insert failure cross-check. */
  readonly onReading?: (reading: ConntrackReading) => void;
}

type StatSource = 'nf_conntrack' | 'nf_conntrack_max';

const U32_RANGE = 2 ** 32;

const KNOWN_COLUMN_HELP: Readonly<Record<string, string>> = {
  clash_resolve:
    'Clashes between two entries for the same tuple that the kernel resolved without dropping.',
  insert_failed:
    'Entries that could not be inserted into the table: the packet was dropped (before kernel 5.10 this also counted clashes that were then resolved).',
  drop: 'Packets dropped because an entry could not be created or confirmed (table full or insert failed).',
  early_drop: 'Entries evicted early to make room in a full table.',
  invalid: 'Packets that could not be tracked (malformed or out of window).',
  found: 'Lookups that found an existing entry.',
  insert: 'Entries inserted.',
  icmp_error: 'Packets the protocol tracker found in error (ICMP errors among them).',
  search_restart: 'Table lookups restarted because the table was resized under them.',
  chaintoolong: 'Inserts refused because the hash chain was too long.',
  expect_new: 'Expectations (related connections) created.',
  expect_create: 'Expectations set up.',
  expect_delete: 'Expectations deleted.',
};

/**
 * Polls the kernel's per-namespace conntrack statistics and exports them.
 *
 * Counter semantics: each `conntrack_observer_kernel_conntrack_<column>_total` mirrors the
 * kernel's own cumulative value (summed over CPUs), not increments counted since the agent
 * started. The kernel's counter already is a Prometheus counter: mirroring it keeps every
 * increment that happened while the agent was down or restarting (an agent-local counter would
 * start again from 0 and lose them), keeps the series continuous across agent restarts, and
 * reads the same as `conntrack -S`. What Prometheus must be spared is a fake reset: each CPU's
 * value is 32 bits and wraps, which would make the sum go backwards, so a wrap (a drop of more
 * than 2^31 on one CPU) adds 2^32 instead. A smaller drop is a real reset (the namespace behind
 * the path was recreated); the export then goes back down with the kernel, which rate() reads
 * as a counter reset, as it is.
 */
export class ConntrackCounters implements Lifecycle {
  readonly name = 'kernel-counters';
  private readonly statPath: string;
  private readonly limitPath: string;
  private readonly intervalMs: number;
  private readonly timers: Pick<Timers, 'every'>;
  private readonly readText: ReadText;
  private readonly columnCounters = new Map<string, Counter>();
  private readonly entriesGauge: Gauge;
  private readonly limitGauge: Gauge;
  private readonly readErrors: Counter<'file' | 'reason'>;
  private readonly failing = new Set<StatSource>();
  private previous: ConntrackStatSnapshot | undefined;
  private wrapOffsets = new Map<string, number>();
  private cancelTimer: (() => void) | undefined;
  private polling: Promise<ConntrackReading | undefined> | undefined;

  constructor(private readonly options: ConntrackCountersOptions) {
    this.statPath = options.statPath ?? CONNTRACK_STAT_PATH;
    this.limitPath = options.limitPath ?? CONNTRACK_MAX_PATH;
    this.intervalMs = options.intervalMs ?? 5_000;
    // Unref'd by default: polling the kernel's counters must not keep the agent alive on its own.
    this.timers = options.timers ?? unrefTimers;
    // procfs files are generated in memory and never block: a synchronous read saves the
    // thread-pool round trips fs/promises makes per file, which is most of an idle poll's cost.
    this.readText = options.readText ?? (async (path) => readFileSync(path, 'utf8'));
    this.entriesGauge = new Gauge({
      name: 'conntrack_observer_kernel_conntrack_entries',
      help: 'Entries in the conntrack table of the watched network namespace.',
      registers: [options.registry],
    });
    this.limitGauge = new Gauge({
      name: 'conntrack_observer_kernel_conntrack_limit',
      help: 'Maximum entries of the conntrack table (nf_conntrack_max, node-wide).',
      registers: [options.registry],
    });
    this.readErrors = new Counter({
      name: 'conntrack_observer_kernel_stats_read_errors_total',
      help: 'Polls of a kernel conntrack file that failed, by file and reason (read: unreadable, parse: unexpected content).',
      labelNames: ['file', 'reason'],
      registers: [options.registry],
    });
    for (const file of ['nf_conntrack', 'nf_conntrack_max'] as const) {
      for (const reason of ['read', 'parse']) this.readErrors.inc({ file, reason }, 0);
    }
  }

  /** Polls now, then every interval until stop() or until `signal` aborts. */
  start(signal?: AbortSignal): void {
    if (this.cancelTimer !== undefined || signal?.aborted === true) return;
    void this.pollOnce();
    this.cancelTimer = this.timers.every(this.intervalMs, () => void this.pollOnce());
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
  }

  /** Stops polling; resolves once a poll under way has finished. */
  async stop(): Promise<void> {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    await this.polling;
  }

  /** One poll; a poll still running is joined rather than overlapped. Never rejects. */
  pollOnce(): Promise<ConntrackReading | undefined> {
    this.polling ??= this.poll().finally(() => {
      this.polling = undefined;
    });
    return this.polling;
  }

  private async poll(): Promise<ConntrackReading | undefined> {
    const [statText, limitText] = await Promise.all([
      this.read('nf_conntrack', this.statPath),
      this.read('nf_conntrack_max', this.limitPath),
    ]);
    let limit: number | undefined;
    if (limitText !== undefined) {
      const parsedLimit = Number(limitText.trim());
      if (Number.isSafeInteger(parsedLimit) && parsedLimit >= 0) {
        limit = parsedLimit;
        this.limitGauge.set(parsedLimit);
        this.recovered('nf_conntrack_max');
      } else {
        this.failed(
          'nf_conntrack_max',
          'parse',
          `not a number: "${limitText.trim().slice(0, 40)}"`,
        );
      }
    }
    if (statText === undefined) return undefined;
    const parsed = parseConntrackStatFile(statText);
    if (!parsed.ok) {
      this.failed('nf_conntrack', 'parse', parsed.error.message);
      return undefined;
    }
    this.recovered('nf_conntrack');
    const reading = { ...this.advance(parsed.stats), limit };
    this.export(reading);
    try {
      this.options.onReading?.(reading);
    } catch (error) {
      this.options.logger.error({ err: error }, 'conntrack reading consumer failed');
    }
    return reading;
  }

  private advance(current: ConntrackStatSnapshot): ConntrackReading {
    const previous = this.previous;
    this.previous = current;
    let reset = false;
    if (previous !== undefined) {
      const sameShape =
        previous.rows.length === current.rows.length &&
        previous.columns.join(' ') === current.columns.join(' ');
      const wraps = new Map<string, number>();
      if (!sameShape) reset = true;
      for (let cpu = 0; sameShape && cpu < current.rows.length; cpu += 1) {
        current.columns.forEach((column, index) => {
          if (column === ENTRIES_COLUMN) return;
          const before = previous.rows[cpu]?.[index] ?? 0;
          const now = current.rows[cpu]?.[index] ?? 0;
          if (now >= before) return;
          if (before - now > U32_RANGE / 2) wraps.set(column, (wraps.get(column) ?? 0) + U32_RANGE);
          else reset = true;
        });
      }
      if (reset) {
        this.wrapOffsets = new Map();
        this.options.logger.warn(
          { path: this.statPath },
          'kernel conntrack counters went backwards: the namespace was recreated; counting from its new values',
        );
      } else {
        for (const [column, offset] of wraps) {
          this.wrapOffsets.set(column, (this.wrapOffsets.get(column) ?? 0) + offset);
        }
      }
    }
    const totals = new Map<string, number>();
    for (const [column, total] of current.totals)
      totals.set(column, total + (this.wrapOffsets.get(column) ?? 0));
    return { totals, entries: current.entries, hasClashResolve: current.hasClashResolve, reset };
  }

  private export(reading: ConntrackReading): void {
    this.entriesGauge.set(reading.entries);
    for (const [column, total] of reading.totals) {
      const counter = this.counterFor(column);
      // prom-client counters only go up; mirroring the kernel means setting the value.
      counter.reset();
      counter.inc(total);
    }
  }

  private counterFor(column: string): Counter {
    let counter = this.columnCounters.get(column);
    if (counter === undefined) {
      const metricName = column.toLowerCase().replace(/[^a-z0-9_]/g, '_');
      counter = new Counter({
        name: `conntrack_observer_kernel_conntrack_${metricName}_total`,
        help: `${KNOWN_COLUMN_HELP[column] ?? `Kernel conntrack statistic "${column}".`} From /proc/net/stat/nf_conntrack of the watched namespace, summed over CPUs; mirrors the kernel's cumulative value.`,
        registers: [this.options.registry],
      });
      this.columnCounters.set(column, counter);
    }
    return counter;
  }

  private async read(file: StatSource, path: string): Promise<string | undefined> {
    try {
      return await this.readText(path);
    } catch (error) {
      this.failed(file, 'read', error instanceof Error ? error.message : String(error), path);
      return undefined;
    }
  }

  private failed(file: StatSource, reason: 'read' | 'parse', message: string, path?: string): void {
    this.readErrors.inc({ file, reason });
    if (this.failing.has(file)) return;
    this.failing.add(file);
    this.options.logger.error(
      {
        file,
        reason,
        path: path ?? (file === 'nf_conntrack' ? this.statPath : this.limitPath),
        error: message,
      },
      'cannot poll kernel conntrack statistics; will keep trying',
    );
  }

  private recovered(file: StatSource): void {
    if (!this.failing.delete(file)) return;
    this.options.logger.info({ file }, 'kernel conntrack statistics readable again');
  }
}
