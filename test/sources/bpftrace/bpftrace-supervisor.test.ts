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
  waitFor,
  type LogRecord,
} from './bpftrace-supervisor-support.js';

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
  clock: { now: number };
}

const running: BpftraceSupervisor[] = [];

function harness(
  probes: { name: string; script: string; args?: string[] }[],
  overrides: Partial<BpftraceSupervisorOptions> = {},
): Harness {
  const registry = new Registry();
  const { logger, records } = capturingLogger();
  const events: Harness['events'] = [];
  const delays = new ManualDelay();
  const spawned: number[] = [];
  const clock = { now: 0 };
  const execaSpawner = createExecaProbeSpawner();
  const spawn: ProbeSpawner = (command, args) => {
    const child = execaSpawner(command, args);
    if (child.pid !== undefined) spawned.push(child.pid);
    return child;
  };
  const supervisor = new BpftraceSupervisor({
    probes: probes.map((probe) => ({
      name: probe.name,
      script: fakeScript(probe.script),
      args: probe.args ?? [],
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
  return { supervisor, registry, records, events, delays, spawned, clock };
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

    await waitFor(() => events.length === 3, 'three events');
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

  it('passes the script positional arguments after the json and line-buffering flags', async () => {
    const { supervisor, events } = harness([
      { name: 'probe-a', script: 'attaches-and-stays', args: ['5'] },
    ]);
    supervisor.start();
    await waitFor(() => events.length === 5, 'five events');
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
    await waitFor(() => events.length === 1, 'one event');
    expect(supervisor.isReady()).toBe(true);
  });

  it('is not ready while any probe has not attached', async () => {
    const { supervisor, registry } = harness([
      { name: 'attaching', script: 'attaches-and-stays' },
      { name: 'stuck', script: 'never-attaches' },
    ]);
    supervisor.start();
    await waitFor(
      () => supervisor.status().find((s) => s.name === 'attaching')?.ready === true,
      'attach',
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
    await waitFor(() => spawned.length === 1, 'first spawn');
    const firstPid = spawned[0]!;
    await waitFor(
      () => records.some((record) => record.stderr === 'Attaching 1 probe...'),
      'its stderr',
    );
    await delays.elapse(30_000);

    await delays.elapse(1_000);
    await waitFor(() => spawned.length === 2, 'the retry');
    expect(isAlive(firstPid)).toBe(false);
    expect(logged(records, 'probe did not attach in time; killing it to retry')).toHaveLength(1);
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
    await waitFor(() => delays.pendingDurations().includes(8_000), 'the fourth backoff');

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
    await waitFor(() => events.length === 502, 'all 502 events');

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
    await waitFor(() => events.length === 1, 'the event after the long line');

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
      await waitFor(() => spawned.length === run && supervisor.isReady(), `run ${run} attached`);
      process.kill(spawned[run - 1]!, 'SIGKILL');
    };

    await killAttachedChild(1);
    await delays.elapse(1_000);
    await killAttachedChild(2);
    await delays.elapse(2_000);
    await killAttachedChild(3);
    await delays.elapse(2_000);
    await waitFor(() => spawned.length === 4 && supervisor.isReady(), 'run 4 attached');
    clock.now += 60_000;
    process.kill(spawned[3]!, 'SIGKILL');
    await delays.elapse(1_000);
    await waitFor(() => spawned.length === 5, 'run 5');
  });

  it('counts malformed lines by error code, logs them truncated and keeps reading', async () => {
    const { supervisor, registry, events, records } = harness([
      { name: 'noisy', script: 'prints-malformed' },
    ]);
    supervisor.start();
    await waitFor(() => events.length === 2, 'both good events');

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
    await waitFor(() => events.length === 1, 'the event after the flood');
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
    await waitFor(() => events.length === 1, 'the event after the losses');
    expect(
      await metricValue(registry, 'conntrack_observer_probe_events_lost_total', { probe: 'storm' }),
    ).toBe(300);
    const losses = logged(records, 'probe lost events: perf ring buffer overflowed');
    expect(losses).toHaveLength(10);
    expect(losses.map((record) => record.lost)).toEqual(Array<number>(10).fill(3));
    expect(losses.every((record) => record.level === LEVEL.warn)).toBe(true);

    clock.now += 60_000;
    process.kill(spawned[0]!, 'SIGUSR1');
    await waitFor(() => events.length === 2, 'the event after the next loss');
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
    await waitFor(() => delays.pendingDurations().includes(2_000), 'the second exit');
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
    await waitFor(() => delays.pendingDurations().includes(2_000), 'the second failure');
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

  it('reports a bpftrace that cannot be started as a failed probe and retries it', async () => {
    const { supervisor, records, delays } = harness(
      [{ name: 'missing', script: 'attaches-and-stays' }],
      {
        bpftracePath: '/nonexistent/bpftrace',
      },
    );
    supervisor.start();
    await waitFor(() => delays.pendingDurations().includes(1_000), 'the retry backoff');
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
    await waitFor(() => calls === 3, 'three sink calls');
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
    await waitFor(() => supervisor.isReady(), 'both attached');
    const stubborn = pidOf(supervisor, 'stubborn')!;
    const polite = pidOf(supervisor, 'polite')!;

    let stopped = false;
    const stopping = supervisor.stop().then(() => {
      stopped = true;
    });
    await waitFor(() => !isAlive(polite), 'the polite probe to exit on SIGTERM');
    await waitFor(
      () => records.some((record) => record.stderr === 'ignoring SIGTERM'),
      'SIGTERM to arrive',
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
    await waitFor(() => delays.pendingDurations().includes(1_000), 'a pending restart');
    await waitFor(
      () => supervisor.status().find((s) => s.name === 'running')?.ready === true,
      'attach',
    );

    controller.abort();
    await supervisor.stop();
    expect(spawned).toHaveLength(2);
    expect(spawned.filter(isAlive)).toEqual([]);
    expect(delays.pendingDurations()).toEqual([]);
  });
});
