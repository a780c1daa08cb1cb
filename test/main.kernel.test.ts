import { execFileSync } from 'node:child_process';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { execa, type ResultPromise } from 'execa';
import { waitFor, waitUntilReady } from './support/agent-harness.js';
import { isAlive } from './support/processes.js';

// The agent and the lab as an operator runs them: separate processes, stopped with signals.
const tsx = ['--import', 'tsx'];

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function bpftraceChildrenOf(pid: number): number[] {
  try {
    return execFileSync('pgrep', ['-x', 'bpftrace', '-P', String(pid)])
      .toString()
      .trim()
      .split('\n')
      .map(Number);
  } catch {
    return [];
  }
}

function labNamespaces(labId: string): string[] {
  return execFileSync('ip', ['netns', 'list'])
    .toString()
    .split('\n')
    .filter((line) => line.startsWith(`${labId}-`));
}

async function exitWithin(child: ResultPromise, ms: number): Promise<number> {
  const started = Date.now();
  let timer: NodeJS.Timeout | undefined;
  const result = await Promise.race([
    child.then((r) => r),
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]);
  clearTimeout(timer);
  if (result === undefined) throw new Error(`did not exit within ${ms} ms`);
  return Date.now() - started;
}

describe('the agent process', () => {
  it('stops on SIGTERM within 5 s with no bpftrace left, beside a lab that leaves no namespace', async () => {
    const lab = execa(
      'node',
      [...tsx, 'test/lab/cli.ts', 'snat-race', '--loop', '--interval-ms', '500', '--json'],
      {
        reject: false,
      },
    );
    let agent: ResultPromise | undefined;
    try {
      const firstLine = await new Promise<string>((resolve, reject) => {
        const lines = createInterface({ input: lab.stdout! });
        lines.once('line', resolve);
        lab.then(() => reject(new Error('the lab exited before it was ready')), reject);
      });
      const ready = JSON.parse(firstLine) as { labId: string; nodeNetnsPid: number };
      expect(labNamespaces(ready.labId).length).toBeGreaterThan(0);

      const port = await freePort();
      agent = execa(
        'node',
        [
          ...tsx,
          'src/main.ts',
          '--listen',
          `127.0.0.1:${port}`,
          '--netns-pid',
          String(ready.nodeNetnsPid),
        ],
        { reject: false },
      );
      await waitUntilReady(`http://127.0.0.1:${port}`);
      // The probes of the mode run in one bpftrace process.
      const probes = await waitFor('one bpftrace child', async () => {
        const children = bpftraceChildrenOf(agent!.pid!);
        return children.length === 1 ? children : undefined;
      });
      for (const pid of probes) {
        expect(
          execFileSync('ps', ['-o', 'comm=', '-p', String(pid)])
            .toString()
            .trim(),
        ).toBe('bpftrace');
      }

      agent.kill('SIGTERM');
      const agentStopMs = await exitWithin(agent, 5_000);
      expect((await agent).exitCode).toBe(0);
      expect(agentStopMs).toBeLessThan(5_000);
      expect(probes.filter(isAlive)).toEqual([]);

      lab.kill('SIGTERM');
      await exitWithin(lab, 30_000);
      expect(labNamespaces(ready.labId)).toEqual([]);
    } finally {
      agent?.kill('SIGKILL');
      lab.kill('SIGTERM');
      await lab;
    }
  });

  it('fails fast with a clear error when kprobe mode is asked of a kernel without kprobes', async () => {
    const result = await execa(
      'node',
      [...tsx, 'src/main.ts', '--probe-mode', 'kprobe', '--listen', '127.0.0.1:0'],
      {
        reject: false,
        timeout: 60_000,
      },
    );
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toMatch(/kprobe mode needs kprobes/);
  });

  it('runs counters-only when asked: kernel counters and no probe at all', async () => {
    const port = await freePort();
    const agent = execa(
      'node',
      [...tsx, 'src/main.ts', '--probe-mode', 'counters-only', '--listen', `127.0.0.1:${port}`],
      { reject: false },
    );
    try {
      await waitUntilReady(`http://127.0.0.1:${port}`);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/^conntrack_observer_probe_mode\{mode="counters-only"\} 1$/m);
      expect(metrics).toMatch(/^conntrack_observer_kernel_conntrack_limit \d+$/m);
      expect(metrics).not.toMatch(/^conntrack_observer_probe_up/m);
      expect(bpftraceChildrenOf(agent.pid!)).toEqual([]);
    } finally {
      agent.kill('SIGTERM');
      await agent;
    }
  });

  it('refuses bad configuration with a message and exit code 2, starting nothing', async () => {
    const result = await execa('node', [...tsx, 'src/main.ts', '--listen', 'nowhere'], {
      reject: false,
    });
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toMatch(/--listen.*HOST:PORT/);
  });
});
