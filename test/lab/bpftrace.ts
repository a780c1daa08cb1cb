import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';

import { ATTACHED_NOTICE, NOTIFY_ATTACHED_ENV } from '../../src/sources/bpftrace/probe-stderr.js';

export const probesDir = fileURLToPath(new URL('../../probes/', import.meta.url));

export interface ProbeRun {
  /** Every stdout line bpftrace printed so far, verbatim (`-f json` records). */
  readonly lines: readonly string[];
  /** The `data` of every printf record so far, trailing newline removed. */
  printfLines(): string[];
  /** Waits until `predicate` holds for the printf lines, or the timeout passes. */
  waitFor(predicate: (lines: string[]) => boolean, timeoutMs: number): Promise<string[]>;
  /** Stops bpftrace (SIGINT, as a user would) and returns every line it printed. */
  stop(): Promise<readonly string[]>;
}

/**
 * Starts `bpftrace -f json -B line SCRIPT ARGS` as the agent does, and resolves once bpftrace
 * says every probe is attached: from then on every matching kernel event is seen.
 */
const STOP_GRACE_MS = 5_000;

export async function startProbe(
  script: string,
  args: readonly string[] = [],
  attachTimeoutMs = 30_000,
  env: Readonly<Record<string, string>> = {},
  bpftrace = 'bpftrace',
): Promise<ProbeRun> {
  const child: ResultPromise = execa(
    bpftrace,
    ['-f', 'json', '-B', 'line', `${probesDir}${script}`, ...args],
    {
      reject: false,
      stdin: 'ignore',
      buffer: { stdout: false, stderr: true },
      env: { ...env, ...NOTIFY_ATTACHED_ENV },
    },
  );
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let attached!: () => void;
  const attachedPromise = new Promise<void>((resolve) => {
    attached = resolve;
  });
  const reader = createInterface({ input: child.stdout! });
  // The attached_probes record comes before bpftrace attaches anything; the notice after, on
  // stderr (0.17) or stdout (0.22 and later), where it is not one of the program's lines.
  reader.on('line', (line) => {
    if (line.trim() === ATTACHED_NOTICE) {
      attached();
      return;
    }
    lines.push(line);
    for (const wake of waiters) wake();
  });
  createInterface({ input: child.stderr! }).on('line', (line) => {
    if (line.trim() === ATTACHED_NOTICE) attached();
  });
  const exited = child.then((result) => {
    throw new Error(`bpftrace ${script} exited before attaching: ${String(result.stderr)}`);
  });
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`bpftrace ${script} did not attach within ${attachTimeoutMs} ms`)),
      attachTimeoutMs,
    );
  });
  try {
    await Promise.race([attachedPromise, exited, timedOut]);
  } catch (error) {
    child.kill('SIGKILL');
    await child;
    throw error;
  } finally {
    clearTimeout(timer);
  }
  exited.catch(() => undefined);

  const printfLines = (): string[] =>
    lines.flatMap((line) => {
      try {
        const record = JSON.parse(line) as { type?: string; data?: unknown };
        return record.type === 'printf' && typeof record.data === 'string'
          ? [record.data.replace(/\n$/, '')]
          : [];
      } catch {
        return [];
      }
    });

  return {
    lines,
    printfLines,
    waitFor: (predicate, timeoutMs) =>
      new Promise((resolve) => {
        const check = (): void => {
          const current = printfLines();
          if (predicate(current)) finish(current);
        };
        const finish = (current: string[]): void => {
          clearTimeout(deadline);
          waiters.delete(check);
          resolve(current);
        };
        const deadline = setTimeout(() => finish(printfLines()), timeoutMs);
        waiters.add(check);
        check();
      }),
    stop: async () => {
      child.kill('SIGINT');
      // bpftrace exits on SIGINT once it has detached; on a loaded machine that has taken long
      // enough to outlast a test's hooks, so it gets a bound, then SIGKILL.
      const killer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
      await child;
      clearTimeout(killer);
      return lines;
    },
  };
}
