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
 * probes print their counts once a second), so the agent's total now is held against the
 * kernel's total of an earlier poll at least the grace time old: whatever the kernel had
 * counted by then has had time to arrive, and failures still on their way are never taken for
 * missing ones (with races every half second, comparing totals of the same moment, or the
 * smallest shortfall over a span, counted an in-flight failure or two as unexplained for good).
 * What has been counted is remembered, so a lasting shortfall is counted once, and the export
 * never goes down when late counts catch up.
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
  /** The kernel's totals since the baseline at the polls of the grace span, oldest first, and the one poll before it. */
  private kernelReadings: { atMs: number; kernelSince: number }[] = [];
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
      help: "Insert failures the kernel counted in the watched namespace since the agent started that no probe reported (the agent's total held against the kernel's of a poll at least the grace time, 3 s, earlier).",
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
      this.kernelReadings = [];
      this.countedShortfall = 0;
      return;
    }
    const kernelSince = kernel - this.kernelBase;
    const observedSince = this.observed - this.observedBase;
    const lasting = Math.max(0, this.kernelGraceAgo(kernelSince) - observedSince);
    if (lasting > this.countedShortfall) {
      this.unexplained.inc(lasting - this.countedShortfall);
      this.countedShortfall = lasting;
    }
    this.coverage.set(kernelSince === 0 ? 1 : Math.min(1, observedSince / kernelSince));
  }

  /**
   * The kernel's total since the baseline at the newest earlier poll at least the grace time
   * ago (0 while there is none): every failure in it has had time to reach the agent.
   */
  private kernelGraceAgo(kernelSince: number): number {
    const now = this.nowMs();
    this.kernelReadings.push({ atMs: now, kernelSince });
    // Keep the newest reading old enough, and the ones after it.
    while (
      this.kernelReadings.length > 2 &&
      now - (this.kernelReadings[1]?.atMs ?? now) >= this.graceMs
    ) {
      this.kernelReadings.shift();
    }
    const reference = this.kernelReadings[0];
    if (
      reference === undefined ||
      this.kernelReadings.length < 2 ||
      now - reference.atMs < this.graceMs
    )
      return 0;
    return reference.kernelSince;
  }
}
