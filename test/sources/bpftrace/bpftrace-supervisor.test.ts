import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Registry } from 'prom-client';

import type { ProbeEvent } from '../../../src/events/types.js';
import {
  BpftraceSupervisor,
  type BpftraceSupervisorOptions,
} from '../../../src/sources/bpftrace/bpftrace-supervisor.js';
import { createLineDecoder } from '../../../src/decode/decode.js';
import {
  createExecaProbeSpawner,
  parentDeathPrefix,
  type ProbeSpawner,
} from '../../../src/sources/bpftrace/probe-process.js';
import {
  capturingLogger,
  isAlive,
  LEVEL,
  ManualDelay,
  metricValue,
  type LogRecord,
} from './bpftrace-supervisor-support.js';
import { eventually } from '../../support/eventually.js';

const fakeBpftrace = fileURLToPath(
  new URL('../../fixtures/fake-bpftrace/bpftrace.mjs', import.meta.url),
);
const fakeScript = (name: string): string =>
  fileURLToPath(new URL(`../../fixtures/fake-bpftrace/${name}.mjs`, import.meta.url));

interface Harness {
  supervisor: BpftraceSupervisor;
  registry: Registry;
  records: LogRecord[];
  events: { event: ProbeEvent; probe: string }[];
  delays: ManualDelay;
  spawned: number[];
  spawnCalls: { args: readonly string[]; env: Readonly<Record<string, string>> | undefined }[];
  clock: { now: number };
}

const running: BpftraceSupervisor[] = [];

function harness(
  probes: {
    name: string;
    script: string;
    args?: string[];
    env?: Record<string, string>;
    bpftraceOptions?: string[];
  }[],
  overrides: Partial<BpftraceSupervisorOptions> = {},
): Harness {
  const registry = new Registry();
  const { logger, records } = capturingLogger();
  const events: Harness['events'] = [];
  const delays = new ManualDelay();
  const spawned: number[] = [];
  const spawnCalls: Harness['spawnCalls'] = [];
  const clock = { now: 0 };
  const execaSpawner = createExecaProbeSpawner();
  const spawn: ProbeSpawner = (command, args, options) => {
    spawnCalls.push({ args, env: options?.env });
    const child = execaSpawner(command, args, options);
    if (child.pid !== undefined) spawned.push(child.pid);
    return child;
  };
  const supervisor = new BpftraceSupervisor({
    probes: probes.map((probe) => ({
      name: probe.name,
      script: fakeScript(probe.script),
      args: probe.args ?? [],
      env: probe.env,
      bpftraceOptions: probe.bpftraceOptions,
    })),
    decoderFor: (probe) => createLineDecoder(probe.name, (code) => `REASON_${code}`),
    onEvent: (event, probe) => events.push({ event, probe }),
    spawn,
    registry,
    logger,
    bpftracePath: fakeBpftrace,
    delay: delays.delay,
    now: () => clock.now,
    random: () => 1,
    stopGraceMs: 500,
    ...overrides,
  });
  running.push(supervisor);
  return { supervisor, registry, records, events, delays, spawned, spawnCalls, clock };
}

const logged = (records: LogRecord[], msg: string): LogRecord[] =>
  records.filter((record) => record.msg === msg);

function pidOf(supervisor: BpftraceSupervisor, probe: string): number | undefined {
  return supervisor.status().find((status) => status.name === probe)?.pid;
}

afterEach(async () => {
  await Promise.all(running.splice(0).map((supervisor) => supervisor.stop()));
});

describe('BpftraceSupervisor', () => {
  it('becomes ready once the probe reports its attached probes, and hands each decoded event to the sink', async () => {
    const { supervisor, registry, events } = harness([
      { name: 'probe-a', script: 'attaches-and-stays', args: ['3'] },
    ]);
    supervisor.start();
    expect(supervisor.isReady()).toBe(false);

    await eventually('three events', () => events.length === 3);
    expect(supervisor.isReady()).toBe(true);
    expect(events.map(({ event }) => event.monotonicNs)).toEqual([1000n, 1001n, 1002n]);
    expect(
      events.every(({ probe, event }) => probe === 'probe-a' && event.kind === 'dns_drop'),
    ).toBe(true);
    expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: 'probe-a' })).toBe(
      1,
    );
    expect(
      await metricValue(registry, 'conntrack_observer_probe_events_decoded_total', {
        probe: 'probe-a',
      }),
    ).toBe(3);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_restarts_total', { probe: 'probe-a' }),
    ).toBe(0);
  });

  it('is not ready on the probe count bpftrace prints before attaching, only once it says every probe is attached', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cro-attach-'));
    try {
      const gate = join(dir, 'attached');
      const { supervisor, registry, events } = harness([
        { name: 'probe-a', script: 'announces-before-attaching', args: [gate] },
      ]);
      supervisor.start();
      await eventually('the event printed before attaching', () => events.length === 1);
      expect(supervisor.isReady()).toBe(false);
      expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: 'probe-a' })).toBe(
        0,
      );

      await writeFile(gate, '');
      await eventually('attached', () => supervisor.isReady());
      expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: 'probe-a' })).toBe(
        1,
      );
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('takes the attached notice on stdout as bpftrace 0.22 and later print it, and logs their map-bound deprecation warning at debug level only', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'cro-attach-gate-'));
    const gate = join(dir, 'attached');
    try {
      const { supervisor, registry, events, records } = harness([
        {
          name: 'probe-a',
          script: 'attaches-like-0.23',
          args: [gate, '2'],
          env: { BPFTRACE_MAP_KEYS_MAX: '64', BPFTRACE_MAX_MAP_KEYS: '64' },
        },
      ]);
      supervisor.start();
      await eventually('the deprecation warning read', () =>
        logged(records, 'bpftrace stderr').some((record) =>
          String(record.stderr).includes('deprecated'),
        ),
      );
      expect(supervisor.isReady()).toBe(false);

      await writeFile(gate, '');
      await eventually('two events', () => events.length === 2);
      expect(supervisor.isReady()).toBe(true);
      expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: 'probe-a' })).toBe(
        1,
      );
      // The notice and the helper_error record are bpftrace's, not lines to reject.
      expect(logged(records, 'probe line rejected')).toEqual([]);
      const warnings = logged(records, 'bpftrace stderr').filter(
        (record) => record.level >= LEVEL.warn,
      );
      expect(warnings).toEqual([]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('hands the process id to onAttached once it has attached, and again after a restart', async () => {
    const attached: { pid: number; probe: string }[] = [];
    const { supervisor, delays, records } = harness(
      [{ name: 'probe-a', script: 'dies-after-lines', args: ['0'] }],
      {
        onAttached: (pid, probe) => {
          attached.push({ pid, probe });
          throw new Error('a failing hook changes nothing');
        },
      },
    );
    supervisor.start();
    await delays.elapse(1_000);
    await eventually('the second attach', () => attached.length === 2);
    expect(attached.map(({ probe }) => probe)).toEqual(['probe-a', 'probe-a']);
    expect(attached[0]?.pid).not.toBe(attached[1]?.pid);
    expect(logged(records, 'onAttached failed')).toHaveLength(2);
  });

  it('passes the script positional arguments after the json and line-buffering flags', async () => {
    const { supervisor, events } = harness([
      { name: 'probe-a', script: 'attaches-and-stays', args: ['5'] },
    ]);
    supervisor.start();
    await eventually('five events', () => events.length === 5);
    expect(supervisor.isReady()).toBe(true);
  });

  it('runs the probe under setpriv --pdeathsig when given its prefix', async () => {
    const prefix = await parentDeathPrefix();
    expect(prefix).toEqual(['/usr/bin/setpriv', '--pdeathsig', 'SIGKILL', '--']);
    const { supervisor, events } = harness(
      [{ name: 'probe-a', script: 'attaches-and-stays', args: ['1'] }],
      {
        commandPrefix: prefix,
      },
    );
    supervisor.start();
    await eventually('one event', () => events.length === 1);
    expect(supervisor.isReady()).toBe(true);
  });

  it('is not ready while any probe has not attached', async () => {
    const { supervisor, registry } = harness([
      { name: 'attaching', script: 'attaches-and-stays' },
      { name: 'stuck', script: 'never-attaches' },
    ]);
    supervisor.start();
    await eventually(
      'attach',
      () => supervisor.status().find((s) => s.name === 'attaching')?.ready === true,
    );
    expect(supervisor.isReady()).toBe(false);
    expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: 'stuck' })).toBe(0);
    expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: 'attaching' })).toBe(
      1,
    );
  });

  it('kills a probe that does not attach in time and retries it', async () => {
    const { supervisor, records, delays, spawned, registry } = harness(
      [{ name: 'stuck', script: 'never-attaches' }],
      {
        attachTimeoutMs: 30_000,
      },
    );
    supervisor.start();
    await eventually('first spawn', () => spawned.length === 1);
    const firstPid = spawned[0]!;
    await eventually('its stderr', () =>
      records.some((record) => record.stderr === 'Attaching 1 probe...'),
    );
    await delays.elapse(30_000);

    await delays.elapse(1_000);
    await eventually('the retry', () => spawned.length === 2);
    expect(isAlive(firstPid)).toBe(false);
    const timedOut = logged(records, 'probe did not attach in time; killing it to retry');
    expect(timedOut).toHaveLength(1);
    expect(timedOut[0]).toMatchObject({
      level: LEVEL.error,
      probe: 'stuck',
      attachTimeoutMs: 30_000,
      hint: expect.stringContaining('--probe-attach-timeout'),
    });
    expect(logged(records, 'probe exited before attaching')[0]).toMatchObject({
      level: LEVEL.error,
      probe: 'stuck',
      signal: 'SIGTERM',
      stderr: 'Attaching 1 probe...',
    });
    expect(
      await metricValue(registry, 'conntrack_observer_probe_restarts_total', { probe: 'stuck' }),
    ).toBe(1);
  });

  it('restarts a probe that dies with exponential backoff and counts every restart and every event', async () => {
    const { supervisor, registry, events, delays, records } = harness([
      { name: 'crashing', script: 'dies-after-lines', args: ['2'] },
    ]);
    supervisor.start();
    await delays.elapse(1_000);
    await delays.elapse(2_000);
    await delays.elapse(4_000);
    await eventually('the fourth backoff', () => delays.pendingDurations().includes(8_000));

    expect(events).toHaveLength(8);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_restarts_total', { probe: 'crashing' }),
    ).toBe(3);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_events_decoded_total', {
        probe: 'crashing',
      }),
    ).toBe(8);
    expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: 'crashing' })).toBe(
      0,
    );
    expect(supervisor.isReady()).toBe(false);
    const exits = logged(records, 'probe exited');
    expect(exits).toHaveLength(4);
    expect(exits[0]).toMatchObject({
      level: LEVEL.warn,
      exitCode: 3,
      stderr: 'ERROR: fake probe crashed',
    });
  });

  it('decodes every line whether it spans two pipe reads, shares one with hundreds of others or ends without a newline', async () => {
    const { supervisor, registry, events } = harness([
      { name: 'bursty', script: 'splits-lines', args: ['500'] },
    ]);
    supervisor.start();
    await eventually('all 502 events', () => events.length === 502);

    expect(events.map(({ event }) => event.monotonicNs)).toEqual(
      Array.from({ length: 502 }, (_, i) => BigInt(5000 + i)),
    );
    expect(
      await metricValue(registry, 'conntrack_observer_probe_events_decoded_total', {
        probe: 'bursty',
      }),
    ).toBe(502);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_lines_rejected_total', {
        probe: 'bursty',
        error: 'not_json',
      }),
    ).toBe(0);
  });

  it('rejects a line longer than a mebibyte once, as too long, without holding it, and decodes what follows', async () => {
    const { supervisor, registry, events } = harness([{ name: 'endless', script: 'endless-line' }]);
    supervisor.start();
    await eventually('the event after the long line', () => events.length === 1);

    expect(events[0]!.event.monotonicNs).toBe(7000n);
    const rejected = async (error: string) =>
      metricValue(registry, 'conntrack_observer_probe_lines_rejected_total', {
        probe: 'endless',
        error,
      });
    expect(await rejected('line_too_long')).toBe(1);
    expect(await rejected('not_json')).toBe(0);
  });

  it('caps the backoff and starts it over after a probe stayed attached for a minute', async () => {
    const { supervisor, delays, clock, spawned } = harness(
      [{ name: 'probe-a', script: 'attaches-and-stays' }],
      {
        backoff: { initialMs: 1_000, maxMs: 2_000, jitter: 0 },
      },
    );
    supervisor.start();
    const killAttachedChild = async (run: number): Promise<void> => {
      await eventually(`run ${run} attached`, () => spawned.length === run && supervisor.isReady());
      process.kill(spawned[run - 1]!, 'SIGKILL');
    };

    await killAttachedChild(1);
    await delays.elapse(1_000);
    await killAttachedChild(2);
    await delays.elapse(2_000);
    await killAttachedChild(3);
    await delays.elapse(2_000);
    await eventually('run 4 attached', () => spawned.length === 4 && supervisor.isReady());
    clock.now += 60_000;
    process.kill(spawned[3]!, 'SIGKILL');
    await delays.elapse(1_000);
    await eventually('run 5', () => spawned.length === 5);
  });

  it('counts malformed lines by error code, logs them truncated and keeps reading', async () => {
    const { supervisor, registry, events, records } = harness([
      { name: 'noisy', script: 'prints-malformed' },
    ]);
    supervisor.start();
    await eventually('both good events', () => events.length === 2);

    const rejected = async (error: string) =>
      metricValue(registry, 'conntrack_observer_probe_lines_rejected_total', {
        probe: 'noisy',
        error,
      });
    expect(await rejected('not_json')).toBe(2);
    expect(await rejected('not_an_object')).toBe(1);
    expect(await rejected('bad_field_count')).toBe(1);
    expect(await rejected('bad_field')).toBe(1);
    expect(await rejected('unknown_record')).toBe(1);
    expect(await rejected('unsupported_version')).toBe(0);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_events_lost_total', { probe: 'noisy' }),
    ).toBe(7);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_events_decoded_total', {
        probe: 'noisy',
      }),
    ).toBe(2);
    expect(supervisor.isReady()).toBe(true);
    expect(supervisor.status()[0]!.restarts).toBe(0);

    const rejections = logged(records, 'probe line rejected');
    expect(rejections).toHaveLength(6);
    const longest = Math.max(...rejections.map((record) => String(record.line).length));
    expect(longest).toBeLessThan(230);
  });

  it('logs at most ten rejected lines a minute however many arrive, and counts them all', async () => {
    const { supervisor, registry, events, records } = harness([
      { name: 'flood', script: 'floods-garbage', args: ['500'] },
    ]);
    supervisor.start();
    await eventually('the event after the flood', () => events.length === 1);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_lines_rejected_total', {
        probe: 'flood',
        error: 'not_json',
      }),
    ).toBe(500);
    expect(logged(records, 'probe line rejected')).toHaveLength(10);
  });

  it('logs at most ten event losses a minute with the events lost since the last message, and counts them all', async () => {
    const { supervisor, registry, events, records, clock, spawned } = harness([
      { name: 'storm', script: 'floods-lost', args: ['100'] },
    ]);
    supervisor.start();
    await eventually('the event after the losses', () => events.length === 1);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_events_lost_total', { probe: 'storm' }),
    ).toBe(300);
    const losses = logged(records, 'probe lost events: perf ring buffer overflowed');
    expect(losses).toHaveLength(10);
    expect(losses.map((record) => record.lost)).toEqual(Array<number>(10).fill(3));
    expect(losses.every((record) => record.level === LEVEL.warn)).toBe(true);

    clock.now += 60_000;
    process.kill(spawned[0]!, 'SIGUSR1');
    await eventually('the event after the next loss', () => events.length === 2);
    // The next window's first message carries the 90 losses held back in the last one.
    const next = logged(records, 'probe lost events: perf ring buffer overflowed')[10];
    expect(next).toMatchObject({ lost: 90 * 3 + 5, reports: 91 });
  });

  it('logs the RLIMIT_MEMLOCK complaint once at info, never as a warning', async () => {
    const { supervisor, records, delays } = harness([
      { name: 'crashing', script: 'dies-after-lines', args: ['0'] },
    ]);
    supervisor.start();
    await delays.elapse(1_000);
    await eventually('the second exit', () => delays.pendingDurations().includes(2_000));
    const memlock = records.filter((record) =>
      String(record.stderr ?? '').includes('RLIMIT_MEMLOCK'),
    );
    expect(memlock.map((record) => record.level)).toEqual([LEVEL.info, LEVEL.debug]);
    expect(
      logged(records, 'bpftrace stderr').filter((record) => record.level === LEVEL.warn),
    ).toHaveLength(2);
  });

  it('reports a probe that exits before attaching with its stderr, and retries it without failing', async () => {
    const { supervisor, records, delays, registry } = harness([
      { name: 'bad', script: 'fails-to-attach' },
    ]);
    supervisor.start();
    await delays.elapse(1_000);
    await eventually('the second failure', () => delays.pendingDurations().includes(2_000));
    const failures = logged(records, 'probe exited before attaching');
    expect(failures).toHaveLength(2);
    expect(failures[0]).toMatchObject({
      level: LEVEL.error,
      probe: 'bad',
      exitCode: 1,
      stderr: 'ERROR: tracepoint not found: skb:no_such_event',
    });
    expect(
      await metricValue(registry, 'conntrack_observer_probe_restarts_total', { probe: 'bad' }),
    ).toBe(1);
  });

  it("reports a probe that exits before attaching three times in a row as unavailable, with bpftrace's error, and is ready without it", async () => {
    const { supervisor, records, delays, registry } = harness([
      { name: 'good', script: 'attaches-and-stays' },
      { name: 'bad', script: 'fails-to-attach' },
    ]);
    supervisor.start();
    await delays.elapse(1_000);
    await delays.elapse(2_000);
    await eventually('the slow retry', () => delays.pendingDurations().includes(300_000));
    await eventually('readiness without the failing probe', () => supervisor.isReady());
    const bad = supervisor.status().find((probe) => probe.name === 'bad');
    expect(bad?.unavailable).toEqual({
      name: 'bad',
      reason: 'exits_before_attach',
      detail: 'ERROR: tracepoint not found: skb:no_such_event',
    });
    expect(
      await metricValue(registry, 'conntrack_observer_probe_unavailable', {
        probe: 'bad',
        reason: 'exits_before_attach',
      }),
    ).toBe(1);
    const marked = records.filter((record) => /^probe unavailable on this kernel/.test(record.msg));
    expect(marked).toHaveLength(1);
    expect(marked[0]).toMatchObject({ level: LEVEL.error, probe: 'bad', failures: 3 });
    expect(marked[0]?.msg).toMatch(/tried again every 300 s/);
  });

  it('says a probe it kept killing for not attaching in time is unavailable because of that', async () => {
    const { supervisor, delays } = harness([{ name: 'slow', script: 'never-attaches' }], {
      attachTimeoutMs: 40_000,
      unavailableAfterFailures: 2,
    });
    supervisor.start();
    await delays.elapse(40_000);
    await delays.elapse(1_000);
    await delays.elapse(40_000);
    await eventually('unavailable', () => supervisor.status()[0]?.unavailable !== undefined);
    expect(supervisor.status()[0]?.unavailable).toMatchObject({
      reason: 'exits_before_attach',
      detail: 'did not attach within 40 s',
    });
  });

  it('keeps retrying an unavailable probe slowly and reports it available once it attaches', async () => {
    const counter = join(await mkdtemp(join(tmpdir(), 'fails-then-attaches-')), 'runs');
    const { supervisor, delays, registry, records } = harness([
      { name: 'late', script: 'fails-then-attaches', args: [counter, '3'] },
    ]);
    supervisor.start();
    await delays.elapse(1_000);
    await delays.elapse(2_000);
    await eventually('unavailable', () => supervisor.status()[0]?.unavailable !== undefined);
    expect(supervisor.status()[0]?.unavailable?.detail).toBe(
      "ERROR: Struct/union of type 'struct nf_conn' does not exist",
    );
    await delays.elapse(300_000);
    await eventually('attach on the slow retry', () => supervisor.status()[0]?.ready === true);
    expect(supervisor.status()[0]?.unavailable).toBeUndefined();
    expect(supervisor.isReady()).toBe(true);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_unavailable', {
        probe: 'late',
        reason: 'exits_before_attach',
      }),
    ).toBe(0);
    expect(logged(records, 'probe attached after all: available again')).toHaveLength(1);
    await rm(dirname(counter), { recursive: true, force: true });
  });

  it('reports the probes detection found unavailable without ever starting them', async () => {
    const { supervisor, registry, spawnCalls } = harness(
      [{ name: 'good', script: 'attaches-and-stays' }],
      {
        unavailable: [
          { name: 'tracepoint/dns-drops', reason: 'no_struct_types', detail: 'no nf_conn' },
        ],
      },
    );
    supervisor.start();
    await eventually('ready', () => supervisor.isReady());
    expect(spawnCalls).toHaveLength(1);
    expect(supervisor.unavailable()).toEqual([
      { name: 'tracepoint/dns-drops', reason: 'no_struct_types', detail: 'no nf_conn' },
    ]);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_unavailable', {
        probe: 'tracepoint/dns-drops',
        reason: 'no_struct_types',
      }),
    ).toBe(1);
  });

  it("gives bpftrace each probe's options before the script and its environment", () => {
    const { supervisor, spawnCalls } = harness([
      {
        name: 'headers',
        script: 'attaches-and-stays',
        args: ['0'],
        env: { BPFTRACE_BTF: '/sys/kernel/btf/vmlinux' },
        bpftraceOptions: ['--include', 'net/netfilter/nf_conntrack.h'],
      },
    ]);
    supervisor.start();
    expect(spawnCalls[0]?.args).toEqual([
      '-f',
      'json',
      '-B',
      'line',
      '--include',
      'net/netfilter/nf_conntrack.h',
      fakeScript('attaches-and-stays'),
      '0',
    ]);
    expect(spawnCalls[0]?.env).toEqual({
      BPFTRACE_BTF: '/sys/kernel/btf/vmlinux',
      // The memory LLVM used to compile is handed back, in one malloc arena (probe-process.ts).
      MALLOC_TRIM_THRESHOLD_: '131072',
      MALLOC_ARENA_MAX: '1',
      // bpftrace then says when every probe is attached, which is when the probe is ready.
      __BPFTRACE_NOTIFY_PROBES_ATTACHED: '1',
    });
  });

  it('reports a bpftrace that cannot be started as a failed probe and retries it', async () => {
    const { supervisor, records, delays } = harness(
      [{ name: 'missing', script: 'attaches-and-stays' }],
      {
        bpftracePath: '/nonexistent/bpftrace',
      },
    );
    supervisor.start();
    await eventually('the retry backoff', () => delays.pendingDurations().includes(1_000));
    expect(logged(records, 'probe exited before attaching')[0]).toMatchObject({
      probe: 'missing',
      spawnError: expect.stringContaining('ENOENT'),
    });
  });

  it('keeps reading when the event sink throws', async () => {
    let calls = 0;
    const { supervisor, registry, records } = harness(
      [{ name: 'probe-a', script: 'attaches-and-stays', args: ['3'] }],
      {
        onEvent: () => {
          calls += 1;
          throw new Error('sink is broken');
        },
      },
    );
    supervisor.start();
    await eventually('three sink calls', () => calls === 3);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_events_decoded_total', {
        probe: 'probe-a',
      }),
    ).toBe(3);
    expect(logged(records, 'event sink failed; event dropped by the sink')).toHaveLength(3);
  });

  it('stops with SIGTERM, SIGKILLs a probe that ignores it after the grace period, and never restarts', async () => {
    const { supervisor, delays, spawned, registry, records } = harness([
      { name: 'stubborn', script: 'ignores-sigterm' },
      { name: 'polite', script: 'attaches-and-stays' },
    ]);
    supervisor.start();
    await eventually('both attached', () => supervisor.isReady());
    const stubborn = pidOf(supervisor, 'stubborn')!;
    const polite = pidOf(supervisor, 'polite')!;

    let stopped = false;
    const stopping = supervisor.stop().then(() => {
      stopped = true;
    });
    await eventually('the polite probe to exit on SIGTERM', () => !isAlive(polite));
    await eventually('SIGTERM to arrive', () =>
      records.some((record) => record.stderr === 'ignoring SIGTERM'),
    );
    expect(isAlive(stubborn)).toBe(true);
    expect(stopped).toBe(false);

    await delays.elapse(500);
    await stopping;
    expect(isAlive(stubborn)).toBe(false);
    expect(spawned).toHaveLength(2);
    expect(supervisor.isReady()).toBe(false);
    expect(logged(records, 'probe ignored SIGTERM; sending SIGKILL')).toHaveLength(1);
    expect(
      await metricValue(registry, 'conntrack_observer_probe_restarts_total', { probe: 'stubborn' }),
    ).toBe(0);
    expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: 'stubborn' })).toBe(
      0,
    );
  });

  it('stops when its abort signal fires, including while a probe waits to be restarted', async () => {
    const { supervisor, delays, spawned } = harness([
      { name: 'crashing', script: 'dies-after-lines' },
      { name: 'running', script: 'attaches-and-stays' },
    ]);
    const controller = new AbortController();
    supervisor.start(controller.signal);
    await eventually('a pending restart', () => delays.pendingDurations().includes(1_000));
    await eventually(
      'attach',
      () => supervisor.status().find((s) => s.name === 'running')?.ready === true,
    );

    controller.abort();
    await supervisor.stop();
    expect(spawned).toHaveLength(2);
    expect(spawned.filter(isAlive)).toEqual([]);
    expect(delays.pendingDurations()).toEqual([]);
  });
});
