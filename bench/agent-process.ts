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
  /** The agent's JSON log lines so far (stdout), when started with `keepLog`. */
  log(): string[];
  /** SIGTERM, then SIGKILL after 10 s; any descendant left after its exit is killed. */
  stop(): Promise<AgentExit>;
}

export interface AgentExit {
  readonly exitCode: number | undefined;
  readonly signal: string | undefined;
  /** Descendants still alive once the agent had exited (killed here): should be none. */
  readonly leftovers: readonly number[];
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
  /** `warn` unless given: the benchmarks measure the agent, not its logging. */
  readonly logLevel?: string;
  /** Keep the agent's stdout (its JSON log) for log(); otherwise it is discarded. */
  readonly keepLog?: boolean;
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
    {
      reject: false,
      stdout: options.keepLog === true ? 'pipe' : 'ignore',
      stderr: 'pipe',
      env: { LOG_LEVEL: options.logLevel ?? 'warn' },
    },
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('the agent did not start');
  let logText = '';
  child.stdout?.setEncoding('utf8');
  child.stdout?.on('data', (chunk: string) => {
    logText += chunk;
  });
  let known: number[] = [];
  const stop = async (): Promise<AgentExit> => {
    known = [...new Set([...known, ...descendantsOf(pid)])];
    child.kill('SIGTERM');
    const exited = await Promise.race([child.then(() => true), sleep(10_000).then(() => false)]);
    if (!exited) child.kill('SIGKILL');
    const result = await child;
    // Its bpftrace children die with it (pdeathsig); anything left is killed here, by pid.
    const leftovers = known.filter(isAlive);
    for (const leftover of leftovers) process.kill(leftover, 'SIGKILL');
    return { exitCode: result.exitCode, signal: result.signal, leftovers };
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
    log: () => logText.split('\n').filter((line) => line !== ''),
    stop,
  };
}

/**
 * The built agent watching a lab's node namespace (`--netns-pid`), on the machine's bpftrace or
 * on the one given (`--bpftrace`).
 */
export function startLabAgent(nodePid: number, bpftrace?: string): Promise<AgentProcess> {
  return startBuiltAgent([
    '--netns-pid',
    String(nodePid),
    ...(bpftrace === undefined ? [] : ['--bpftrace', bpftrace]),
  ]);
}
