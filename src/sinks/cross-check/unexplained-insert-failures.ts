import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';

import type { ConntrackReading } from '../../sources/kernel-stats/conntrack-counters.js';

export interface UnexplainedInsertFailuresOptions {
  readonly registry: Registry;
  readonly logger: Logger;
  /** Milliseconds, any monotonic origin: when each kernel reading is observed. */
  readonly nowMs?: () => number;
  /**
   * How long a shortfall must last before it counts (default 3 s): the probes count in the
   * kernel and print their counts once a second, so a failure reaches the agent up to about a
   * second after the kernel counted it, plus bpftrace's and the pipe's delay.
   */
  readonly graceMs?: number;
}

/** The probes' count period (1 s) twice, and a second for bpftrace and the pipe. */
const DEFAULT_GRACE_MS = 3_000;

/**
 * The agent's own blind spots: insert failures the kernel counted in the watched namespace
 * that no probe reported.
 *
 * Both sides are compared as totals since a common baseline (the first kernel reading), never
 * per interval, so an event that lands in the interval after its kernel increment still
 * matches it. A probe's count reaches the agent a little after the kernel counter moves (the
 * probes print their counts once a second), so a shortfall only counts once it has lasted two
 * consecutive polls and the grace time, and only for the part that lasted: the counted amount
 * is the smallest shortfall seen over that span. What has been counted is remembered, so a
 * lasting shortfall is counted once, and the export never goes down when late counts catch up.
 *
 * Before kernel 5.10 (no clash_resolve column) insert_failed also counted clashes the kernel
 * then resolved without dropping anything; the probes only see drops, so on those kernels this
 * over-reports. That is not hidden: `conntrack_observer_kernel_insert_failed_includes_resolved_clashes`
 * is 1 there and it is logged.
 */
export class UnexplainedInsertFailures {
  private observed = 0;
  private kernelBase: number | undefined;
  private observedBase = 0;
  /** Shortfalls at the polls of the grace span, oldest first, and the one poll before it. */
  private shortfalls: { atMs: number; shortfall: number }[] = [];
  private readonly nowMs: () => number;
  private readonly graceMs: number;
  private countedShortfall = 0;
  private clashWarningLogged = false;
  private readonly unexplained: Counter;
  private readonly coverage: Gauge;
  private readonly includesResolvedClashes: Gauge;

  constructor(private readonly options: UnexplainedInsertFailuresOptions) {
    this.nowMs = options.nowMs ?? (() => performance.now());
    this.graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
    this.unexplained = new Counter({
      name: 'conntrack_observer_unexplained_insert_failures_total',
      help: 'Insert failures the kernel counted in the watched namespace since the agent started that no probe reported (a shortfall counted once it has lasted two polls).',
      registers: [options.registry],
    });
    this.coverage = new Gauge({
      name: 'conntrack_observer_probe_coverage_ratio',
      help: 'Share of the kernel insert failures since the agent started that the probes reported (1 when there were none).',
      registers: [options.registry],
    });
    this.includesResolvedClashes = new Gauge({
      name: 'conntrack_observer_kernel_insert_failed_includes_resolved_clashes',
      help: '1 when the kernel has no clash_resolve statistic (before 5.10): its insert_failed then also counts resolved clashes and unexplained insert failures are over-reported.',
      registers: [options.registry],
    });
    this.coverage.set(1);
  }

  /** A probe reported an insert failure in the watched namespace. */
  recordObserved(count = 1): void {
    this.observed += count;
  }

  /** Feed every kernel reading of the watched namespace, in order (ConntrackCounters' onReading). */
  observeKernel(reading: ConntrackReading): void {
    this.includesResolvedClashes.set(reading.hasClashResolve ? 0 : 1);
    if (!reading.hasClashResolve && !this.clashWarningLogged) {
      this.clashWarningLogged = true;
      this.options.logger.warn(
        'kernel has no clash_resolve statistic (before 5.10): insert_failed includes resolved clashes, unexplained insert failures will be over-reported',
      );
    }
    const kernel = reading.totals.get('insert_failed');
    if (kernel === undefined) return;
    if (this.kernelBase === undefined || reading.reset) {
      // A new baseline: after a reset the new namespace's failures before this poll are not
      // attributable to the old namespace's probe counts, so neither side is compared for them.
      this.kernelBase = kernel;
      this.observedBase = this.observed;
      this.shortfalls = [];
      this.countedShortfall = 0;
      return;
    }
    const kernelSince = kernel - this.kernelBase;
    const observedSince = this.observed - this.observedBase;
    const shortfall = Math.max(0, kernelSince - observedSince);
    const lasting = this.lastingShortfall(shortfall);
    if (lasting > this.countedShortfall) {
      this.unexplained.inc(lasting - this.countedShortfall);
      this.countedShortfall = lasting;
    }
    this.coverage.set(kernelSince === 0 ? 1 : Math.min(1, observedSince / kernelSince));
  }

  /**
   * The part of the shortfall that has lasted two polls and the grace time: the smallest one
   * seen from the last poll at least the grace time ago until now (0 while there is none).
   */
  private lastingShortfall(shortfall: number): number {
    const now = this.nowMs();
    this.shortfalls.push({ atMs: now, shortfall });
    // Keep one reading older than the grace span: the span's start.
    for (;;) {
      const second = this.shortfalls[1];
      if (this.shortfalls.length <= 2 || second === undefined || now - second.atMs < this.graceMs)
        break;
      this.shortfalls.shift();
    }
    const first = this.shortfalls[0];
    if (first === undefined || this.shortfalls.length < 2 || now - first.atMs < this.graceMs)
      return 0;
    return Math.min(...this.shortfalls.map((reading) => reading.shortfall));
  }
}
