import { execa } from 'execa';
import { createExecaProbeSpawner } from '../src/sources/bpftrace/probe-process.js';
import { ATTACHED_NOTICE, NOTIFY_ATTACHED_ENV } from '../src/sources/bpftrace/probe-stderr.js';
import type { BenchPrograms } from './build-c.js';

export interface EmitRate {
  readonly syscalls: number;
  readonly seconds: number;
  readonly linesReceived: number;
  readonly linesPerSecond: number;
  readonly lostEvents: number;
  /** CPU time (user + system) of this Node process over the measured interval, in seconds. */
  readonly readerCpuSeconds: number;
}

/*
 * One line per getppid() of the loop, shaped like an insert_failed record (same printf
 * format, same argument types: docs/probe-events.md), so bpftrace formats as much per event as
 * the real probe does.
 */
const script = `tracepoint:syscalls:sys_enter_getppid /comm == "getppid-loop"/ {
  printf("insert_failed 1 %llu %u %u 0x%x %u %s %u %s %u %s %u %s %u %s\\n",
    nsecs, cpu, 4026531840, 0x190, 17,
    ntop(0x0200f40a), 40000, ntop(0x350200c0), 53,
    ntop(0x350200c0), 53, ntop(0x010200c0), 40000,
    ksym(kaddr("nf_hook_slow")));
}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** bpftrace's ceiling: lines per second Node receives from `-f json -B line`, and what it lost. */
export async function measureEmitRate(programs: BenchPrograms, seconds = 5): Promise<EmitRate> {
  // The agent's own reader: the spawner the supervisor runs its probes with.
  const bpftrace = createExecaProbeSpawner()(
    'bpftrace',
    ['-f', 'json', '-B', 'line', '-e', script],
    { env: NOTIFY_ATTACHED_ENV },
  );
  let linesReceived = 0;
  let lostEvents = 0;
  let attached!: () => void;
  const attachedPromise = new Promise<void>((resolve) => (attached = resolve));
  const reading = (async () => {
    for await (const lines of bpftrace.stdoutBatches) {
      for (const line of lines) {
        if (line.includes('"printf"')) linesReceived += 1;
        else if (line.includes('"lost_events"')) {
          const parsed = JSON.parse(line) as { data?: { events?: number } };
          lostEvents += parsed.data?.events ?? 0;
        }
      }
    }
  })();
  const draining = (async () => {
    for await (const line of bpftrace.stderrLines) if (line.trim() === ATTACHED_NOTICE) attached();
  })();
  try {
    await Promise.race([
      attachedPromise,
      sleep(30_000).then(() => {
        throw new Error('bpftrace did not attach');
      }),
    ]);
    const cpuBefore = process.cpuUsage();
    const started = process.hrtime.bigint();
    const loop = await execa(programs.path('getppid-loop'), [String(seconds)]);
    const { calls } = JSON.parse(loop.stdout) as { calls: number };
    // Let bpftrace drain what is still in its buffers: wait until nothing moves for 0.5 s.
    let previous = -1;
    while (previous !== linesReceived + lostEvents) {
      previous = linesReceived + lostEvents;
      await sleep(500);
    }
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    const cpu = process.cpuUsage(cpuBefore);
    bpftrace.kill('SIGINT');
    await Promise.all([reading, draining]);
    return {
      syscalls: calls,
      seconds: elapsed,
      linesReceived,
      linesPerSecond: linesReceived / elapsed,
      lostEvents,
      readerCpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
  } finally {
    bpftrace.kill('SIGKILL');
    await bpftrace.exited;
  }
}
