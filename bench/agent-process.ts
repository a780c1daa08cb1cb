import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { descendantsOf, isAlive } from './proc-usage.js';

export interface AgentProcess {
  readonly pid: number;
  readonly baseUrl: string;
  metrics(): Promise<string>;
  /** bpftrace (and any other) processes the agent started. */
  children(): number[];
  stop(): Promise<void>;
}

const mainPath = fileURLToPath(new URL('../dist/main.js', import.meta.url));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface BuiltAgentOptions {
  /** `dist/main.js` of this tree unless given. */
  readonly mainPath?: string;
  readonly probeMode?: 'tracepoint' | 'kprobe' | 'counters-only';
  readonly readyTimeoutMs?: number;
}

/** Starts the built agent (`node dist/main.js`) and waits until /readyz answers 200. */
export async function startBuiltAgent(
  extraArgs: readonly string[] = [],
  options: BuiltAgentOptions = {},
): Promise<AgentProcess> {
  const port = await freePort();
  const baseUrl = `http://127.0.0.1:${port}`;
  const child: ResultPromise = execa(
    'node',
    [
      options.mainPath ?? mainPath,
      '--listen',
      `127.0.0.1:${port}`,
      '--probe-mode',
      options.probeMode ?? 'tracepoint',
      ...extraArgs,
    ],
    { reject: false, stdout: 'ignore', stderr: 'pipe', env: { LOG_LEVEL: 'warn' } },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('the agent did not start');
  let known: number[] = [];
  const stop = async () => {
    known = [...new Set([...known, ...descendantsOf(pid)])];
    child.kill('SIGTERM');
    const exited = await Promise.race([child.then(() => true), sleep(10_000).then(() => false)]);
    if (!exited) child.kill('SIGKILL');
    await child;
    // Its bpftrace children die with it (pdeathsig); anything left is killed here, by pid.
    for (const leftover of known) {
      if (isAlive(leftover)) process.kill(leftover, 'SIGKILL');
    }
  };
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const deadline = Date.now() + readyTimeoutMs;
  try {
    for (;;) {
      if (child.exitCode !== null)
        throw new Error(`the agent exited: ${String((await child).stderr)}`);
      try {
        if ((await fetch(`${baseUrl}/readyz`)).status === 200) break;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline)
        throw new Error(`the agent was not ready within ${readyTimeoutMs / 1000} s`);
      await sleep(200);
    }
  } catch (error) {
    await stop();
    throw error;
  }
  known = descendantsOf(pid);
  return {
    pid,
    baseUrl,
    metrics: async () => (await fetch(`${baseUrl}/metrics`)).text(),
    children: () => descendantsOf(pid),
    stop,
  };
}
