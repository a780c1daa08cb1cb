import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
// Variables that would give the child a configuration the test did not choose.
const INHERITED_CONFIG = ['KUBECONFIG', 'NODE_NAME', 'KUBERNETES_SERVICE_HOST', 'NODE_OPTIONS'];

export interface AgentProcess {
  readonly pid: number;
  readonly baseUrl: string;
  /** Every JSON log line the process wrote so far. */
  readonly logs: Record<string, unknown>[];
  /** SIGTERM, then waits for the exit (SIGKILL after `graceMs`); returns the exit code. */
  stop(graceMs?: number): Promise<number | undefined>;
}

/**
 * Reads an agent process's JSON log: every record, and the port it listens on, from its
 * start-up line (`--listen …:0` works). Rejects when the process exits before listening.
 */
export function followAgentLog(child: ResultPromise): {
  readonly logs: Record<string, unknown>[];
  /** Its standard error, chunk by chunk. */
  readonly stderr: string[];
  readonly listening: Promise<number>;
} {
  const logs: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  child.stderr?.on('data', (chunk: Buffer) => stderr.push(String(chunk)));
  const listening = new Promise<number>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      logs.push(record);
      const address = record.address as { port?: number } | undefined;
      if (typeof address?.port === 'number') resolve(address.port);
    });
    void child.then((result) =>
      reject(
        new Error(
          `agent exited (${String(result.exitCode)}) before listening: ${stderr.join('')} ${JSON.stringify(logs.slice(-3))}`,
        ),
      ),
    );
  });
  return { logs, stderr, listening };
}

/**
 * Runs `src/main.ts` as its own process, exactly as an operator would (through tsx), with the
 * environment given plus PATH/HOME, and resolves once it serves HTTP: the port comes from its
 * own start-up log, so `--listen 127.0.0.1:0` works.
 */
export async function startAgentProcess(
  argv: readonly string[],
  env: Readonly<Record<string, string>> = {},
  startTimeoutMs = 60_000,
): Promise<AgentProcess> {
  const base = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !INHERITED_CONFIG.includes(name)),
  );
  const child: ResultPromise = execa('node', ['--import', 'tsx', 'src/main.ts', ...argv], {
    cwd: REPO_ROOT,
    env: { ...base, ...env },
    extendEnv: false,
    reject: false,
    buffer: false,
    stdout: 'pipe',
    stderr: 'pipe',
  });
  const { logs, listening } = followAgentLog(child);
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`agent not listening after ${startTimeoutMs} ms`)),
      startTimeoutMs,
    );
  });

  let exited: Promise<number | undefined> | undefined;
  const stop = (graceMs = 10_000): Promise<number | undefined> =>
    (exited ??= (async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const result = await child;
      clearTimeout(killer);
      return result.exitCode;
    })());

  try {
    const port = await Promise.race([listening, timeout]);
    return { pid: child.pid!, baseUrl: `http://127.0.0.1:${port}`, logs, stop };
  } catch (error) {
    await stop(2_000);
    throw error;
  } finally {
    clearTimeout(timer);
  }
}
