import { execa, type ResultPromise } from 'execa';
import { Registry } from 'prom-client';

import {
  ConntrackCounters,
  type ConntrackReading,
} from '../../../src/sources/kernel-stats/conntrack-counters.js';
import { conntrackStatPathOf } from '../../../src/sources/kernel-stats/netns-inode.js';
import { capturingLogger, metricValue } from '../bpftrace/bpftrace-supervisor-support.js';

const NAMESPACE = `ctobs-counters-${process.pid}`;
const DATAGRAMS = 12;

// `conntrack -S` (netlink, an independent reader of the same kernel statistics) → our column names.
const CONNTRACK_TOOL_NAMES: Record<string, string> = { error: 'icmp_error' };

let holder: ResultPromise | undefined;

async function inNamespace(...command: string[]) {
  return execa('ip', ['netns', 'exec', NAMESPACE, ...command]);
}

async function conntrackToolTotals(): Promise<Map<string, number>> {
  const { stdout } = await inNamespace('conntrack', '-S');
  const totals = new Map<string, number>();
  for (const [, name, value] of stdout.matchAll(/(\w+)=(\d+)/g)) {
    if (name === undefined || value === undefined || name === 'cpu') continue;
    const column = CONNTRACK_TOOL_NAMES[name] ?? name;
    totals.set(column, (totals.get(column) ?? 0) + Number(value));
  }
  return totals;
}

beforeAll(async () => {
  await execa('ip', ['netns', 'add', NAMESPACE]);
  await inNamespace('ip', 'link', 'set', 'lo', 'up');
  // A ct expression makes the kernel track this namespace's traffic.
  await inNamespace(
    'nft',
    'add table inet counters; add chain inet counters out { type filter hook output priority 0 ; } ; add rule inet counters out ct state new counter',
  );
  holder = execa('ip', ['netns', 'exec', NAMESPACE, 'sleep', '600'], { reject: false });
});

afterAll(async () => {
  holder?.kill('SIGKILL');
  await holder;
  await execa('ip', ['netns', 'del', NAMESPACE], { reject: false });
});

describe('ConntrackCounters on the real kernel', () => {
  it('reads the counters of another network namespace through /proc/<pid> and agrees with conntrack -S', async () => {
    const registry = new Registry();
    const { logger } = capturingLogger();
    const readings: ConntrackReading[] = [];
    const counters = new ConntrackCounters({
      registry,
      logger,
      statPath: conntrackStatPathOf(holder!.pid!),
      onReading: (reading) => readings.push(reading),
    });

    const before = await counters.pollOnce();
    expect(before?.entries).toBe(0);
    for (let port = 5000; port < 5000 + DATAGRAMS; port += 1) {
      await inNamespace('bash', '-c', `echo probe > /dev/udp/127.0.0.1/${port}`);
    }
    const after = await counters.pollOnce();

    const { stdout: toolCount } = await inNamespace('conntrack', '-C');
    expect(after?.entries).toBe(Number(toolCount));
    expect(after?.entries).toBeGreaterThanOrEqual(DATAGRAMS);
    expect(await metricValue(registry, 'conntrack_observer_kernel_conntrack_entries', {})).toBe(
      after?.entries,
    );

    const toolTotals = await conntrackToolTotals();
    expect(toolTotals.size).toBeGreaterThan(5);
    for (const [column, value] of toolTotals) {
      expect([
        column,
        await metricValue(registry, `conntrack_observer_kernel_conntrack_${column}_total`, {}),
      ]).toEqual([column, value]);
    }
    expect(after?.hasClashResolve).toBe(true);

    const { stdout: max } = await execa('cat', ['/proc/sys/net/netfilter/nf_conntrack_max']);
    expect(await metricValue(registry, 'conntrack_observer_kernel_conntrack_limit', {})).toBe(
      Number(max),
    );
    expect(readings.map((reading) => reading.reset)).toEqual([false, false]);
  });

  it('counts read errors and keeps polling once the process of the watched namespace is gone', async () => {
    const registry = new Registry();
    const { logger, records } = capturingLogger();
    const doomed = execa('ip', ['netns', 'exec', NAMESPACE, 'sleep', '600'], { reject: false });
    const counters = new ConntrackCounters({
      registry,
      logger,
      statPath: conntrackStatPathOf(doomed.pid!),
    });
    expect(await counters.pollOnce()).toBeDefined();

    doomed.kill('SIGKILL');
    await doomed;
    expect(await counters.pollOnce()).toBeUndefined();
    expect(await counters.pollOnce()).toBeUndefined();
    expect(
      await metricValue(registry, 'conntrack_observer_kernel_stats_read_errors_total', {
        file: 'nf_conntrack',
        reason: 'read',
      }),
    ).toBe(2);
    expect(
      records.filter(
        (record) => record.msg === 'cannot poll kernel conntrack statistics; will keep trying',
      ),
    ).toHaveLength(1);
  });
});
