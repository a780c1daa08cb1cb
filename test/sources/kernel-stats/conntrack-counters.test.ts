import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { Registry } from 'prom-client';

import {
  ConntrackCounters,
  type ConntrackReading,
} from '../../../src/sources/kernel-stats/conntrack-counters.js';
import type { Timers } from '../../../src/shared/timers.js';
import {
  capturingLogger,
  metricValue,
  type LogRecord,
} from '../bpftrace/bpftrace-supervisor-support.js';

const STAT = '/proc/4242/net/stat/nf_conntrack';
const MAX = '/proc/sys/net/netfilter/nf_conntrack_max';
const HEADER =
  'entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart';

const fixture = (name: string): Promise<string> =>
  readFile(fileURLToPath(new URL(`../../fixtures/proc/${name}`, import.meta.url)), 'utf8');

/** A stat file of two CPUs in this kernel's layout with the given insert_failed and drop per CPU. */
function statFile(
  entries: number,
  insertFailed: [number, number],
  drop: [number, number] = [0, 0],
): string {
  const hex = (value: number) => value.toString(16).padStart(8, '0');
  const row = (cpu: 0 | 1) => {
    const values = new Array<number>(17).fill(0);
    values[0] = entries;
    values[9] = insertFailed[cpu];
    values[10] = drop[cpu];
    return values.map(hex).join(' ');
  };
  return `${HEADER}\n${row(0)}\n${row(1)}\n`;
}

class ManualTimer implements Pick<Timers, 'every'> {
  ticks: (() => void)[] = [];
  intervals: number[] = [];
  cancelled = 0;
  every(ms: number, tick: () => void): () => void {
    this.intervals.push(ms);
    this.ticks.push(tick);
    return () => {
      this.cancelled += 1;
      this.ticks = this.ticks.filter((candidate) => candidate !== tick);
    };
  }
}

interface Harness {
  counters: ConntrackCounters;
  registry: Registry;
  records: LogRecord[];
  files: Map<string, string>;
  readings: ConntrackReading[];
  timer: ManualTimer;
}

function harness(files: Record<string, string>): Harness {
  const registry = new Registry();
  const { logger, records } = capturingLogger();
  const fileMap = new Map(Object.entries(files));
  const readings: ConntrackReading[] = [];
  const timer = new ManualTimer();
  const counters = new ConntrackCounters({
    registry,
    logger,
    statPath: STAT,
    limitPath: MAX,
    timers: timer,
    intervalMs: 5_000,
    readText: async (path) => {
      const text = fileMap.get(path);
      if (text === undefined) throw new Error(`ENOENT: no such file or directory, open '${path}'`);
      return text;
    },
    onReading: (reading) => readings.push(reading),
  });
  return { counters, registry, records, files: fileMap, readings, timer };
}

const value = (registry: Registry, name: string, labels: Record<string, string> = {}) =>
  metricValue(registry, name, labels);

describe('ConntrackCounters', () => {
  it('exports every column of the real file as a counter at the kernel value, with entries and limit as gauges', async () => {
    const { counters, registry } = harness({
      [STAT]: await fixture('nf_conntrack-6.18-dnat-race.txt'),
      [MAX]: '262144\n',
    });
    await counters.pollOnce();
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_clash_resolve_total')).toBe(
      442,
    );
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_insert_failed_total')).toBe(
      0,
    );
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_entries')).toBe(0x3928);
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_limit')).toBe(262144);
    const names = (await registry.getMetricsAsJSON()).map((metric) => metric.name);
    for (const column of [
      'drop',
      'early_drop',
      'invalid',
      'chaintoolong',
      'search_restart',
      'found',
      'icmp_error',
    ]) {
      expect(names).toContain(`conntrack_observer_kernel_conntrack_${column}_total`);
    }
    expect(names).not.toContain('conntrack_observer_kernel_conntrack_entries_total');
  });

  it('keeps the columns of an older kernel, whatever they are', async () => {
    const { counters, registry } = harness({
      [STAT]: await fixture('nf_conntrack-5.4-no-clashres.txt'),
      [MAX]: '65536',
    });
    const reading = await counters.pollOnce();
    expect(reading?.hasClashResolve).toBe(false);
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_insert_failed_total')).toBe(
      19,
    );
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_delete_list_total')).toBe(0);
    expect(
      registry.getSingleMetric('conntrack_observer_kernel_conntrack_clash_resolve_total'),
    ).toBeUndefined();
  });

  it('follows the kernel value from poll to poll', async () => {
    const { counters, registry, files } = harness({
      [STAT]: statFile(10, [1, 2]),
      [MAX]: '262144',
    });
    await counters.pollOnce();
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_insert_failed_total')).toBe(
      3,
    );
    files.set(STAT, statFile(12, [5, 2], [1, 1]));
    await counters.pollOnce();
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_insert_failed_total')).toBe(
      7,
    );
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_drop_total')).toBe(2);
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_entries')).toBe(12);
  });

  it('keeps counting up when one CPU counter wraps past 2^32', async () => {
    const { counters, registry, files, readings } = harness({
      [STAT]: statFile(1, [0xfffffff0, 5]),
      [MAX]: '262144',
    });
    await counters.pollOnce();
    files.set(STAT, statFile(1, [0x10, 6]));
    await counters.pollOnce();
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_insert_failed_total')).toBe(
      2 ** 32 + 0x10 + 6,
    );
    expect(readings.map((reading) => reading.reset)).toEqual([false, false]);
  });

  it('treats counters going backwards as a new namespace: follows the kernel down and flags the reset', async () => {
    const { counters, registry, files, readings, records } = harness({
      [STAT]: statFile(40, [30, 20]),
      [MAX]: '262144',
    });
    await counters.pollOnce();
    files.set(STAT, statFile(2, [1, 0]));
    await counters.pollOnce();
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_insert_failed_total')).toBe(
      1,
    );
    expect(readings.map((reading) => reading.reset)).toEqual([false, true]);
    expect(records.filter((record) => String(record.msg).includes('went backwards'))).toHaveLength(
      1,
    );
  });

  it('counts every failed poll, logs a failure streak once, and goes on polling', async () => {
    const { counters, registry, files, records } = harness({ [MAX]: '262144' });
    await counters.pollOnce();
    await counters.pollOnce();
    await counters.pollOnce();
    const readErrors = () =>
      value(registry, 'conntrack_observer_kernel_stats_read_errors_total', {
        file: 'nf_conntrack',
        reason: 'read',
      });
    expect(await readErrors()).toBe(3);
    expect(
      records.filter(
        (record) => record.msg === 'cannot poll kernel conntrack statistics; will keep trying',
      ),
    ).toHaveLength(1);

    files.set(STAT, statFile(3, [1, 1]));
    await counters.pollOnce();
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_insert_failed_total')).toBe(
      2,
    );
    expect(
      records.filter((record) => record.msg === 'kernel conntrack statistics readable again'),
    ).toHaveLength(1);

    files.set(STAT, 'garbage');
    await counters.pollOnce();
    expect(
      await value(registry, 'conntrack_observer_kernel_stats_read_errors_total', {
        file: 'nf_conntrack',
        reason: 'parse',
      }),
    ).toBe(1);
    expect(await readErrors()).toBe(3);
    expect(
      records.filter(
        (record) => record.msg === 'cannot poll kernel conntrack statistics; will keep trying',
      ),
    ).toHaveLength(2);
  });

  it('counts an unreadable limit on its own and still exports the stat file', async () => {
    const { counters, registry } = harness({ [STAT]: statFile(3, [1, 1]), [MAX]: 'x' });
    await counters.pollOnce();
    expect(
      await value(registry, 'conntrack_observer_kernel_stats_read_errors_total', {
        file: 'nf_conntrack_max',
        reason: 'parse',
      }),
    ).toBe(1);
    expect(await value(registry, 'conntrack_observer_kernel_conntrack_insert_failed_total')).toBe(
      2,
    );
  });

  it('polls at start and on every timer tick until stopped', async () => {
    const { counters, timer, readings, files } = harness({
      [STAT]: statFile(1, [0, 0]),
      [MAX]: '1',
    });
    counters.start();
    expect(timer.intervals).toEqual([5_000]);
    await counters.pollOnce();
    expect(readings).toHaveLength(1);
    files.set(STAT, statFile(1, [1, 0]));
    timer.ticks[0]!();
    await counters.pollOnce();
    expect(readings.at(-1)?.totals.get('insert_failed')).toBe(1);
    await counters.stop();
    expect(timer.ticks).toEqual([]);
  });

  it('stops when its abort signal fires', async () => {
    const { counters, timer } = harness({ [STAT]: statFile(1, [0, 0]), [MAX]: '1' });
    const controller = new AbortController();
    counters.start(controller.signal);
    await counters.pollOnce();
    controller.abort();
    expect(timer.cancelled).toBe(1);
    expect(timer.ticks).toEqual([]);
  });

  it('does not overlap polls: a tick during a poll joins it', async () => {
    const { counters, readings } = harness({ [STAT]: statFile(1, [0, 0]), [MAX]: '1' });
    await Promise.all([counters.pollOnce(), counters.pollOnce(), counters.pollOnce()]);
    expect(readings).toHaveLength(1);
  });
});
