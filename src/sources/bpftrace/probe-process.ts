import { access, constants } from 'node:fs/promises';
import type { Readable } from 'node:stream';

import { execa } from 'execa';

import { MAX_LINE_CHARS } from '../../decode/decoded-line.js';

/** How a probe's process ended. `spawnError` is set when it could not be started at all. */
export interface ProbeExit {
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly spawnError: string | undefined;
}

/** One running probe process, seen through what the supervisor needs and nothing more. */
export interface ProbeProcess {
  readonly pid: number | undefined;
  /**
   * Stdout as batches of whole lines without their newlines, in order: every line that one read
   * from the pipe completed. A last line with no newline comes in a batch of its own at the end.
   * Ends when the process closes stdout.
   */
  readonly stdoutBatches: AsyncIterable<readonly string[]>;
  readonly stderrLines: AsyncIterable<string>;
  kill(signal: NodeJS.Signals): void;
  /** Settles once the process is gone; never rejects. */
  readonly exited: Promise<ProbeExit>;
}

/**
 * Added to every bpftrace process's environment; the idle benchmark (docs/benchmarks.md,
 * section 3) measures what is left at rest.
 * - glibc's malloc raises its trim threshold each time a large block is freed, so the heap LLVM
 *   used to compile the program would stay with the process for its whole life; a fixed
 *   threshold (glibc's default, 128 KiB, which also turns that raising off) hands it back to
 *   the kernel. bpftrace 0.17 at rest: 112.4 MB before, 103.3 MB after.
 * - bpftrace 0.23 runs part of its start-up on a second thread, and glibc gives that thread a
 *   malloc arena of its own, which keeps about 5 MB for the process's life though the thread is
 *   gone; at rest bpftrace is one thread, so one arena costs nothing. Measured with the
 *   combined program at rest: 118.1 MB resident with two arenas, 113.0 MB with one (0.17,
 *   which starts no such thread: 106.2 and 107.0 MB).
 */
export const BPFTRACE_HEAP_ENV = {
  MALLOC_TRIM_THRESHOLD_: '131072',
  MALLOC_ARENA_MAX: '1',
} as const;

export interface ProbeSpawnOptions {
  /** Variables added to the child's environment, e.g. BPFTRACE_BTF. */
  readonly env?: Readonly<Record<string, string>>;
}

export type ProbeSpawner = (
  command: string,
  args: readonly string[],
  options?: ProbeSpawnOptions,
) => ProbeProcess;

export interface ExecaProbeSpawnerOptions {
  /** Environment of the children; the parent's when absent. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export function createExecaProbeSpawner(options: ExecaProbeSpawnerOptions = {}): ProbeSpawner {
  return (command, args, spawnOptions = {}) => {
    const extra = spawnOptions.env ?? {};
    const subprocess = execa(command, [...args], {
      stdin: 'ignore',
      // Output is streamed, never kept: a probe runs for the agent's whole life.
      buffer: false,
      reject: false,
      // The supervisor sends SIGKILL itself after its own grace period.
      forceKillAfterDelay: false,
      // Still kill the children when the agent exits normally or on a signal it handles.
      cleanup: true,
      stripFinalNewline: false,
      ...(options.env === undefined
        ? { env: extra }
        : { env: { ...options.env, ...extra }, extendEnv: false }),
    });
    const exited: Promise<ProbeExit> = subprocess.then(
      (result) => ({
        exitCode: result.exitCode,
        signal: result.signal,
        spawnError: spawnErrorOf(result),
      }),
      (error: unknown) => ({
        exitCode: undefined,
        signal: undefined,
        spawnError: error instanceof Error ? error.message : String(error),
      }),
    );
    return {
      pid: subprocess.pid,
      stdoutBatches: lineBatches(subprocess.stdout),
      stderrLines: guardLines(subprocess.iterable({ from: 'stderr' })),
      kill: (signal) => {
        subprocess.kill(signal);
      },
      exited,
    };
  };
}

function spawnErrorOf(result: {
  failed: boolean;
  exitCode?: number;
  signal?: string;
  originalMessage?: string;
}) {
  if (!result.failed || result.exitCode !== undefined || result.signal !== undefined)
    return undefined;
  return result.originalMessage ?? 'the process could not be started';
}

// A stream that errors (e.g. the process could not be spawned) ends the iteration instead of
// throwing into the supervisor: how the process ended is reported through `exited`.
async function* guardLines(lines: AsyncIterable<unknown>): AsyncIterable<string> {
  try {
    for await (const line of lines) yield String(line);
  } catch {
    return;
  }
}

/*
 * A busy probe writes tens of thousands of lines a second, one write() each (`-B line`). Reading
 * the pipe in chunks and splitting them here costs one await per chunk instead of execa's
 * line iteration, which takes a generator step and a promise per line: under a storm the reader
 * then competes less with bpftrace for the CPU, and bpftrace loses fewer events.
 */
/** Exported for its tests: the agent reads stdout only through `stdoutBatches`. */
export async function* lineBatches(stream: Readable | null): AsyncIterable<readonly string[]> {
  if (stream === null) return;
  // Invalid UTF-8 becomes U+FFFD here: the decoder sees text, never a decoding error.
  stream.setEncoding('utf8');
  let partial = '';
  // Inside a line already handed on cut at MAX_LINE_CHARS: the rest of it, up to its newline,
  // is dropped, so that one over-long line is one rejected line.
  let discarding = false;
  try {
    for await (const chunk of stream as AsyncIterable<string>) {
      const lines = chunk.split('\n');
      if (discarding) {
        if (lines.length === 1) continue;
        lines.shift();
        discarding = false;
      } else {
        lines[0] = partial + (lines[0] ?? '');
      }
      partial = lines.pop() ?? '';
      if (partial.length > MAX_LINE_CHARS) {
        // Garbage with no end in sight: hand on what came so far as one line (the decoder
        // rejects it as too long and counts it) rather than hold it all in memory.
        lines.push(partial);
        partial = '';
        discarding = true;
      }
      if (lines.length === 0) continue;
      for (let i = 0; i < lines.length; i += 1) lines[i] = withoutCarriageReturn(lines[i] ?? '');
      yield lines;
    }
  } catch {
    // As for stderr: how the process ended is reported through `exited`.
  }
  if (partial !== '') yield [withoutCarriageReturn(partial)];
}

function withoutCarriageReturn(line: string): string {
  return line.endsWith('\r') ? line.slice(0, -1) : line;
}

/**
 * The prefix that makes the kernel SIGKILL a probe when the agent dies, however it dies
 * (SIGKILL included, where no exit handler runs): util-linux `setpriv --pdeathsig`, which sets
 * PR_SET_PDEATHSIG and then execs bpftrace, so the probe keeps its pid. Empty when setpriv is
 * not there; the probes then outlive an agent killed with SIGKILL.
 */
export async function parentDeathPrefix(
  candidates: readonly string[] = ['/usr/bin/setpriv', '/bin/setpriv'],
  isExecutable: (path: string) => Promise<boolean> = executable,
): Promise<string[]> {
  for (const path of candidates) {
    if (await isExecutable(path)) return [path, '--pdeathsig', 'SIGKILL', '--'];
  }
  return [];
}

async function executable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}
