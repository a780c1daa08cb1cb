import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';

import type { ConntrackReading } from '../../sources/kernel-stats/conntrack-counters.js';

export interface UnexplainedInsertFailuresOptions {
  readonly registry: Registry;
  readonly logger: Logger;
}

/**
 * The agent's own blind spots: insert failures the kernel counted in the watched namespace
 * that no probe reported.
 *
 * Both sides are compared as totals since a common baseline (the first kernel reading), never
 * per interval, so an event that lands in the interval after its kernel increment still
 * matches it. A probe event reaches the agent a little after the kernel counter moves (perf
 * ring, bpftrace, pipe), so a shortfall only counts once it has lasted two consecutive polls,
 * and only for the part that lasted: the counted amount is min(shortfall now, shortfall at the
 * previous poll). What has been counted is remembered, so a lasting shortfall is counted once,
 * and the export never goes down when late events catch up.
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
  private previousShortfall = 0;
  private countedShortfall = 0;
  private clashWarningLogged = false;
  private readonly unexplained: Counter;
  private readonly coverage: Gauge;
  private readonly includesResolvedClashes: Gauge;

  constructor(private readonly options: UnexplainedInsertFailuresOptions) {
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
      this.previousShortfall = 0;
      this.countedShortfall = 0;
      return;
    }
    const kernelSince = kernel - this.kernelBase;
    const observedSince = this.observed - this.observedBase;
    const shortfall = Math.max(0, kernelSince - observedSince);
    const lasting = Math.min(shortfall, this.previousShortfall);
    if (lasting > this.countedShortfall) {
      this.unexplained.inc(lasting - this.countedShortfall);
      this.countedShortfall = lasting;
    }
    this.previousShortfall = shortfall;
    this.coverage.set(kernelSince === 0 ? 1 : Math.min(1, observedSince / kernelSince));
  }
}
