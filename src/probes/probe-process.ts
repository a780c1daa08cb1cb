import { access, constants } from 'node:fs/promises';

import { execa } from 'execa';

/** How a probe's process ended. `spawnError` is set when it could not be started at all. */
export interface ProbeExit {
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  readonly spawnError: string | undefined;
}

/** One running probe process, seen through what the supervisor needs and nothing more. */
export interface ProbeProcess {
  readonly pid: number | undefined;
  /** Stdout, one line at a time without its newline; ends when the process closes stdout. */
  readonly stdoutLines: AsyncIterable<string>;
  readonly stderrLines: AsyncIterable<string>;
  kill(signal: NodeJS.Signals): void;
  /** Settles once the process is gone; never rejects. */
  readonly exited: Promise<ProbeExit>;
}

export type ProbeSpawner = (command: string, args: readonly string[]) => ProbeProcess;

export interface ExecaProbeSpawnerOptions {
  /** Environment of the children; the parent's when absent. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

export function createExecaProbeSpawner(options: ExecaProbeSpawnerOptions = {}): ProbeSpawner {
  return (command, args) => {
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
      ...(options.env === undefined ? {} : { env: options.env, extendEnv: false }),
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
      stdoutLines: guardLines(subprocess.iterable({ from: 'stdout' })),
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
