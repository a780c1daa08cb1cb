import { execa } from 'execa';

export interface LabCommandOutcome {
  /** Undefined when the process was killed or never started. */
  readonly exitCode: number | undefined;
  readonly stdout: string;
  readonly stderr: string;
  /** Why it did not finish by itself: never started, timed out or cancelled; else undefined. */
  readonly failure: string | undefined;
}

export interface LabRunOptions {
  readonly timeoutMs: number;
  readonly input?: string;
  /** Stops the command (SIGTERM, then SIGKILL) when aborted. */
  readonly signal?: AbortSignal;
}

/** Runs a command to completion; never throws. The lab's one way to start a process. */
export type LabRunner = (
  file: string,
  args: readonly string[],
  options: LabRunOptions,
) => Promise<LabCommandOutcome>;

export function createExecaLabRunner(): LabRunner {
  return async (file, args, options) => {
    const result = await execa(file, [...args], {
      reject: false,
      timeout: options.timeoutMs,
      input: options.input,
      stdin: options.input === undefined ? 'ignore' : 'pipe',
      cancelSignal: options.signal,
      // The race generators stop between rounds on SIGTERM; SIGKILL only if one hangs.
      forceKillAfterDelay: 1_000,
    });
    const finished = result.exitCode !== undefined && !result.timedOut && !result.isCanceled;
    return {
      exitCode: result.exitCode,
      stdout: typeof result.stdout === 'string' ? result.stdout : '',
      stderr: typeof result.stderr === 'string' ? result.stderr : '',
      failure: finished ? undefined : result.shortMessage,
    };
  };
}

/** Throws `onFailure()` unless the command ran and exited 0; returns its stdout. */
export async function mustRun(
  run: LabRunner,
  file: string,
  args: readonly string[],
  options: LabRunOptions,
  onFailure: (detail: string) => Error,
): Promise<string> {
  const outcome = await run(file, args, options);
  if (outcome.exitCode !== 0) {
    const detail = outcome.failure ?? (outcome.stderr.trim() || `exit ${outcome.exitCode}`);
    throw onFailure(`${file} ${args.join(' ')}: ${detail}`);
  }
  return outcome.stdout;
}
