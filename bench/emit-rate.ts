import { execa } from 'execa';
import type { BenchPrograms } from './build-c.js';

export interface EmitRate {
  readonly syscalls: number;
  readonly seconds: number;
  readonly linesReceived: number;
  readonly linesPerSecond: number;
  readonly lostEvents: number;
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

/** bpftrace's ceiling: lines per second Node receives from `-f json -B line`, and what it lost. */
export async function measureEmitRate(programs: BenchPrograms, seconds = 5): Promise<EmitRate> {
  const bpftrace = execa('bpftrace', ['-f', 'json', '-B', 'line', '-e', script], {
    reject: false,
    stderr: 'ignore',
    buffer: false,
  });
  let linesReceived = 0;
  let lostEvents = 0;
  let attached!: () => void;
  const attachedPromise = new Promise<void>((resolve) => (attached = resolve));
  // The agent reads its probes the same way: execa's line iteration over stdout.
  const reading = (async () => {
    for await (const line of bpftrace.iterable({ from: 'stdout' })) {
      if (line.includes('"printf"')) linesReceived += 1;
      else if (line.includes('"attached_probes"')) attached();
      else if (line.includes('"lost_events"')) {
        const parsed = JSON.parse(line) as { data?: { events?: number } };
        lostEvents += parsed.data?.events ?? 0;
      }
    }
  })();
  try {
    await Promise.race([
      attachedPromise,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error('bpftrace did not attach')), 30_000),
      ),
    ]);
    const started = process.hrtime.bigint();
    const loop = await execa(programs.path('getppid-loop'), [String(seconds)]);
    const { calls } = JSON.parse(loop.stdout) as { calls: number };
    // Let bpftrace drain what is still in its buffers before stopping it.
    let previous = -1;
    while (previous !== linesReceived) {
      previous = linesReceived;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    bpftrace.kill('SIGINT');
    await reading;
    return {
      syscalls: calls,
      seconds: elapsed,
      linesReceived,
      linesPerSecond: linesReceived / elapsed,
      lostEvents,
    };
  } finally {
    if (bpftrace.exitCode === null) bpftrace.kill('SIGKILL');
    await bpftrace;
  }
}
