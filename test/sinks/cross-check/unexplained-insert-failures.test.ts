import { Registry } from 'prom-client';

import type { ConntrackReading } from '../../../src/sources/kernel-stats/conntrack-counters.js';
import { UnexplainedInsertFailures } from '../../../src/sinks/cross-check/unexplained-insert-failures.js';
import {
  capturingLogger,
  metricValue,
} from '../../sources/bpftrace/bpftrace-supervisor-support.js';

function reading(
  insertFailed: number,
  options: { reset?: boolean; hasClashResolve?: boolean } = {},
): ConntrackReading {
  return {
    totals: new Map([
      ['insert_failed', insertFailed],
      ['drop', insertFailed],
    ]),
    entries: 1,
    hasClashResolve: options.hasClashResolve ?? true,
    reset: options.reset ?? false,
  };
}

/** Each kernel reading is one poll `pollMs` after the one before (default: the agent's 5 s). */
function setup({ pollMs = 5_000, graceMs }: { pollMs?: number; graceMs?: number } = {}) {
  const registry = new Registry();
  const { logger, records } = capturingLogger();
  let nowMs = 0;
  const check = new UnexplainedInsertFailures({
    registry,
    logger,
    graceMs,
    nowMs: () => (nowMs += pollMs),
  });
  const unexplained = () =>
    metricValue(registry, 'conntrack_observer_unexplained_insert_failures_total', {});
  const coverage = () => metricValue(registry, 'conntrack_observer_probe_coverage_ratio', {});
  const overReporting = () =>
    metricValue(registry, 'conntrack_observer_kernel_insert_failed_includes_resolved_clashes', {});
  return { check, records, unexplained, coverage, overReporting };
}

describe('unexplained insert failures', () => {
  it('counts nothing the kernel counted before the agent started', async () => {
    const { check, unexplained } = setup();
    check.observeKernel(reading(500));
    check.observeKernel(reading(500));
    check.observeKernel(reading(500));
    expect(await unexplained()).toBe(0);
  });

  it('counts nothing when every kernel failure was reported by a probe, even one poll late', async () => {
    const { check, unexplained, coverage } = setup();
    check.observeKernel(reading(10));
    check.observeKernel(reading(13));
    check.recordObserved();
    check.recordObserved(2);
    check.observeKernel(reading(13));
    check.observeKernel(reading(13));
    expect(await unexplained()).toBe(0);
    expect(await coverage()).toBe(1);
  });

  it('counts a shortfall that lasts two polls, once', async () => {
    const { check, unexplained, coverage } = setup();
    check.observeKernel(reading(0));
    check.recordObserved();
    check.observeKernel(reading(4));
    expect(await unexplained()).toBe(0);
    check.observeKernel(reading(4));
    expect(await unexplained()).toBe(3);
    check.observeKernel(reading(4));
    check.observeKernel(reading(4));
    expect(await unexplained()).toBe(3);
    expect(await coverage()).toBe(0.25);
  });

  it('counts only the part of a shortfall that lasted', async () => {
    const { check, unexplained } = setup();
    check.observeKernel(reading(0));
    check.observeKernel(reading(5));
    check.recordObserved(3);
    check.observeKernel(reading(5));
    expect(await unexplained()).toBe(2);
  });

  it('never goes down when late events catch up, and counts a new shortfall only beyond what it already counted', async () => {
    const { check, unexplained } = setup();
    check.observeKernel(reading(0));
    check.observeKernel(reading(2));
    check.observeKernel(reading(2));
    expect(await unexplained()).toBe(2);
    check.recordObserved(2);
    check.observeKernel(reading(2));
    expect(await unexplained()).toBe(2);
    check.observeKernel(reading(5));
    check.observeKernel(reading(5));
    expect(await unexplained()).toBe(3);
  });

  it('never counts a negative shortfall when probes report more than the kernel counted', async () => {
    const { check, unexplained, coverage } = setup();
    check.observeKernel(reading(0));
    check.recordObserved(4);
    check.observeKernel(reading(1));
    check.observeKernel(reading(3));
    check.observeKernel(reading(3));
    expect(await unexplained()).toBe(0);
    expect(await coverage()).toBe(1);
  });

  it('starts a new baseline when the kernel counters were reset, keeping what it already counted', async () => {
    const { check, unexplained } = setup();
    check.observeKernel(reading(100));
    check.observeKernel(reading(101));
    check.observeKernel(reading(101));
    expect(await unexplained()).toBe(1);
    check.observeKernel(reading(7, { reset: true }));
    check.observeKernel(reading(7));
    check.observeKernel(reading(9));
    check.observeKernel(reading(9));
    expect(await unexplained()).toBe(3);
  });

  it('flags and logs a kernel without clash_resolve, where insert_failed also counts resolved clashes', async () => {
    const { check, records, overReporting } = setup();
    check.observeKernel(reading(0, { hasClashResolve: false }));
    check.observeKernel(reading(0, { hasClashResolve: false }));
    expect(await overReporting()).toBe(1);
    expect(records.filter((record) => String(record.msg).includes('over-reported'))).toHaveLength(
      1,
    );
  });

  it('says insert_failed is exact on a kernel with clash_resolve', async () => {
    const { check, overReporting } = setup();
    check.observeKernel(reading(0));
    expect(await overReporting()).toBe(0);
  });
});

describe('UnexplainedInsertFailures with polls faster than the probes print their counts', () => {
  it('waits out the grace time before a shortfall counts, however many polls it spans', async () => {
    const { check, unexplained } = setup({ pollMs: 500, graceMs: 3_000 });
    check.observeKernel(reading(0));
    // Five failures the counts will bring a second later: four polls of 0.5 s see them missing.
    for (let poll = 0; poll < 4; poll += 1) check.observeKernel(reading(5));
    expect(await unexplained()).toBe(0);
    check.recordObserved(5);
    for (let poll = 0; poll < 10; poll += 1) check.observeKernel(reading(5));
    expect(await unexplained()).toBe(0);
    // Two that never arrive: counted once they have lasted the grace time.
    for (let poll = 0; poll < 6; poll += 1) check.observeKernel(reading(7));
    expect(await unexplained()).toBe(0);
    for (let poll = 0; poll < 2; poll += 1) check.observeKernel(reading(7));
    expect(await unexplained()).toBe(2);
  });

  it('never takes failures still on their way for missing ones, however steadily they come', async () => {
    const { check, unexplained } = setup({ pollMs: 500, graceMs: 3_000 });
    // A race every poll; each failure reaches the agent two polls (1 s) after the kernel
    // counted it: at every poll two are on their way, none is missing.
    check.observeKernel(reading(0));
    for (let poll = 1; poll <= 40; poll += 1) {
      if (poll > 2) check.recordObserved();
      check.observeKernel(reading(poll));
    }
    expect(await unexplained()).toBe(0);
    // The races stop; one failure never arrives: counted once the grace time has passed.
    for (let poll = 0; poll < 10; poll += 1) {
      if (poll === 0) check.recordObserved();
      check.observeKernel(reading(40));
    }
    expect(await unexplained()).toBe(1);
  });
});
