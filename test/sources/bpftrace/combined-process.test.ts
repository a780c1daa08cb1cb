import { fileURLToPath } from 'node:url';

import { Registry } from 'prom-client';

import type { ProbeEvent } from '../../../src/events/types.js';
import {
  BpftraceSupervisor,
  type MapRecord,
  type ProbeDefinition,
} from '../../../src/sources/bpftrace/bpftrace-supervisor.js';
import { createLineDecoder } from '../../../src/decode/decode.js';
import {
  createExecaProbeSpawner,
  type ProbeSpawner,
} from '../../../src/sources/bpftrace/probe-process.js';
import { capturingLogger, ManualDelay, metricValue } from './bpftrace-supervisor-support.js';
import { eventually } from '../../support/eventually.js';

const fakeBpftrace = fileURLToPath(
  new URL('../../fixtures/fake-bpftrace/combined-bpftrace.mjs', import.meta.url),
);
const fakeScript = (name: string): string =>
  fileURLToPath(new URL(`../../fixtures/fake-bpftrace/${name}.mjs`, import.meta.url));

const INSERT = 'tracepoint/conntrack-insert-failed';
const DNS = 'tracepoint/dns-drops';

function probes(
  insertSource = 'tracepoint:skb:kfree_skb /args->reason == $1/ { }',
): ProbeDefinition[] {
  return [
    {
      name: INSERT,
      script: fakeScript('attaches-and-stays'),
      args: ['0'],
      env: { BPFTRACE_BTF: '/sys/kernel/btf/vmlinux' },
      combinable: { source: insertSource, records: ['insert_failed'], maps: [] },
    },
    {
      name: DNS,
      script: fakeScript('attaches-and-stays'),
      args: ['1'],
      env: { BPFTRACE_MAP_KEYS_MAX: '8192' },
      bpftraceOptions: ['--include', 'net/netfilter/nf_conntrack.h'],
      combinable: {
        source: 'interval:s:1 { print(@dns_drop_totals); } END { clear(@dns_ticks); }',
        records: ['dns_drop'],
        maps: ['@dns_drop_totals', '@dns_drops_0', '@dns_drops_1'],
      },
    },
  ];
}

const running: BpftraceSupervisor[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((supervisor) => supervisor.stop()));
});

function harness(definitions: ProbeDefinition[]) {
  const registry = new Registry();
  const { logger, records } = capturingLogger();
  const events: { event: ProbeEvent; probe: string }[] = [];
  const counts: { record: MapRecord; probe: string; run: number }[] = [];
  const calls: { args: readonly string[]; env: Readonly<Record<string, string>> | undefined }[] =
    [];
  const execaSpawner = createExecaProbeSpawner();
  const spawn: ProbeSpawner = (command, args, options) => {
    calls.push({ args, env: options?.env });
    return execaSpawner(command, args, options);
  };
  const supervisor = new BpftraceSupervisor({
    probes: definitions,
    decoderFor: (probe) => createLineDecoder(probe.name, (code) => `REASON_${code}`),
    onEvent: (event, probe) => events.push({ event, probe }),
    onCounts: (record, probe, run) => counts.push({ record, probe, run }),
    spawn,
    registry,
    logger,
    bpftracePath: fakeBpftrace,
    combine: true,
    delay: new ManualDelay().delay,
    random: () => 1,
    stopGraceMs: 500,
  });
  running.push(supervisor);
  return { supervisor, registry, records, events, counts, calls };
}

describe('BpftraceSupervisor running the probes of a mode in one bpftrace process', () => {
  it('starts one process with the merged environment and options, and every probe is ready once it attached', async () => {
    const { supervisor, calls } = harness(probes());
    supervisor.start();
    await eventually('ready', () => supervisor.isReady());
    expect(calls).toHaveLength(1);
    const [call] = calls;
    expect(call?.args.slice(0, 6)).toEqual([
      '-f',
      'json',
      '-B',
      'line',
      '--include',
      'net/netfilter/nf_conntrack.h',
    ]);
    expect(call?.args[6]).toBe('-e');
    expect(call?.args[7]).toContain('args->reason == 0');
    expect(call?.env).toEqual({
      BPFTRACE_BTF: '/sys/kernel/btf/vmlinux',
      BPFTRACE_MAP_KEYS_MAX: '8192',
      MALLOC_TRIM_THRESHOLD_: '131072',
      MALLOC_ARENA_MAX: '1',
      __BPFTRACE_NOTIFY_PROBES_ATTACHED: '1',
    });
    const [insert, dns] = supervisor.status();
    expect(insert?.pid).toBeDefined();
    expect(insert?.pid).toBe(dns?.pid);
  });

  it('hands each record and map to the probe that prints it, and counts what no probe prints under probe="combined"', async () => {
    const { supervisor, registry, events, counts } = harness(probes());
    supervisor.start();
    await eventually('events and maps', () => events.length === 2 && counts.length === 2);
    expect(events.map(({ event, probe }) => [event.kind, probe])).toEqual([
      ['insert_failed', INSERT],
      ['dns_drop', DNS],
    ]);
    expect(counts.map(({ record, probe }) => [record.type, probe])).toEqual([
      ['counts', DNS],
      ['map_cleared', DNS],
    ]);
    await eventually('lost and garbage counted', async () => {
      const lostCount = await metricValue(registry, 'conntrack_observer_probe_events_lost_total', {
        probe: 'combined',
      });
      return lostCount === 7;
    });
    expect(
      await metricValue(registry, 'conntrack_observer_probe_lines_rejected_total', {
        probe: 'combined',
        error: 'not_json',
      }),
    ).toBe(1);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_events_decoded_total', { probe: DNS }),
    ).toBe(1);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_map_records_total', { probe: DNS }),
    ).toBe(2);
    expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: INSERT })).toBe(1);
  });

  it('falls back to one process per probe, and says so, when the combined program exits before attaching', async () => {
    const { supervisor, calls, records } = harness(
      probes('tracepoint:skb:kfree_skb { FAKE_REFUSE }'),
    );
    supervisor.start();
    await eventually('ready', () => supervisor.isReady());
    expect(
      calls.map((call) => call.args.find((arg) => arg === '-e' || arg.endsWith('.mjs'))),
    ).toEqual(['-e', fakeScript('attaches-and-stays'), fakeScript('attaches-and-stays')]);
    expect(
      records.some((record) =>
        record.msg.startsWith('combined bpftrace program exited before attaching; falling back'),
      ),
    ).toBe(true);
    const [insert, dns] = supervisor.status();
    expect(insert?.pid).not.toBe(dns?.pid);
  });
});
