import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execa } from 'execa';
import { startFakeApiServer, type FakeApiServer } from './support/fake-apiserver.js';
import { stored } from './support/k8s-fixtures.js';

// A start-up failure must end the process promptly and leave nothing behind, also with
// Kubernetes configured (informers and the Event writer would otherwise keep it alive).
const EXIT_AFTER_FAILURE_MS = 5_000;

interface FailedStart {
  readonly exitCode: number | undefined;
  /** The fatal log line (stdout) or the configuration error (stderr). */
  readonly reason: string;
  /** From the moment the failure was reported to the exit. */
  readonly exitAfterReportMs: number;
}

function bpftraceProcesses(): number[] {
  try {
    return execFileSync('pgrep', ['-x', 'bpftrace']).toString().trim().split('\n').map(Number);
  } catch {
    return [];
  }
}

/** Runs the agent as an operator would and waits for it to fail (bounded). */
async function failedStart(argv: readonly string[]): Promise<FailedStart> {
  const child = execa('node', ['--import', 'tsx', 'src/main.ts', ...argv], {
    reject: false,
    timeout: 120_000,
    env: { KUBECONFIG: '', NODE_NAME: '' },
  });
  let reportedAt: number | undefined;
  let reason = '';
  const lines = createInterface({ input: child.stdout! });
  lines.on('line', (line) => {
    if (!line.includes('"level":60')) return;
    reportedAt ??= Date.now();
    reason = (JSON.parse(line) as { msg: string }).msg;
  });
  child.stderr!.on('data', (chunk: Buffer) => {
    reportedAt ??= Date.now();
    reason += String(chunk);
  });
  const result = await child;
  if (reportedAt === undefined) throw new Error(`the agent exited without a reason: ${result.all}`);
  return {
    exitCode: result.exitCode,
    reason,
    exitAfterReportMs: Date.now() - reportedAt,
  };
}

describe('a failed start in Kubernetes mode', () => {
  let fake: FakeApiServer;
  let kubeconfig: string;
  let emptyTracefs: string;
  let portHolder: Server;
  let takenPort: number;

  beforeAll(async () => {
    fake = await startFakeApiServer({ nodes: [stored('node-lab-node')] });
    kubeconfig = await fake.kubeConfigFile();
    emptyTracefs = mkdtempSync(join(tmpdir(), 'no-tracefs-'));
    portHolder = createServer();
    await new Promise<void>((resolve) => portHolder.listen(0, '127.0.0.1', resolve));
    takenPort = (portHolder.address() as { port: number }).port;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => portHolder.close(() => resolve()));
    rmSync(emptyTracefs, { recursive: true, force: true });
    await fake.close();
  });

  const kubernetes = (): string[] => ['--kubeconfig', kubeconfig, '--node-name', 'lab-node'];

  it.each([
    {
      what: 'a --netns-pid that names no process',
      argv: () => [...kubernetes(), '--netns-pid', '2147483646'],
      exitCode: 1,
      reason: /cannot read the network namespace of process 2147483646/,
    },
    {
      // The kfree_skb format (drop reasons included) is read from the --tracefs given alone.
      what: 'no tracefs (so no drop reasons) at the --tracefs given',
      argv: () => [...kubernetes(), '--probe-mode', 'tracepoint', '--tracefs', emptyTracefs],
      exitCode: 1,
      reason: /a mounted tracefs \(none at \S*no-tracefs-\w+;/,
    },
    {
      what: 'a listen address already in use',
      argv: () => [...kubernetes(), '--listen', `127.0.0.1:${takenPort}`],
      exitCode: 1,
      reason: /cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/,
    },
    {
      what: 'a probe mode the kernel cannot run',
      argv: () => [...kubernetes(), '--probe-mode', 'kprobe'],
      exitCode: 1,
      reason: /kprobe mode needs kprobes/,
    },
    {
      what: 'no node name',
      argv: () => ['--kubeconfig', kubeconfig],
      exitCode: 1,
      reason: /no node name: pass --node-name/,
    },
    {
      what: 'a kubeconfig that does not exist',
      argv: () => ['--kubeconfig', join(emptyTracefs, 'missing'), '--node-name', 'lab-node'],
      exitCode: 2,
      reason: /invalid Kubernetes configuration/,
    },
  ])('exits $exitCode promptly with the reason, leaving nothing running: $what', async (c) => {
    const before = bpftraceProcesses();
    const failed = await failedStart(c.argv());
    expect(failed.reason).toMatch(c.reason);
    expect(failed.exitCode).toBe(c.exitCode);
    expect(failed.exitAfterReportMs).toBeLessThan(EXIT_AFTER_FAILURE_MS);
    expect(bpftraceProcesses().filter((pid) => !before.includes(pid))).toEqual([]);
    expect(fake.watcherCount()).toBe(0);
  });
});
