import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

import { execa } from 'execa';
import { Registry } from 'prom-client';

import type { ProbeEvent } from '../../../src/events/types.js';
import { BpftraceSupervisor } from '../../../src/sources/bpftrace/bpftrace-supervisor.js';
import { createLineDecoder } from '../../../src/decode/decode.js';
import {
  createExecaProbeSpawner,
  parentDeathPrefix,
} from '../../../src/sources/bpftrace/probe-process.js';
import { capturingLogger, isAlive, metricValue } from './bpftrace-supervisor-support.js';
import { eventually } from '../../support/eventually.js';

// Prints a well-formed event of the wire format ten times a second: enough to see the stream
// flow without depending on any packet being dropped.
const TICKING_SCRIPT = `interval:ms:100 {
  printf("dns_drop 1 %llu %d 4026531840 12 10.244.0.2 40000 10.96.0.10 53 interval\\n", nsecs, cpu);
}
`;

const hostScript = fileURLToPath(new URL('./bpftrace-supervisor-host.ts', import.meta.url));

let workDir: string;
let scriptPath: string;

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'supervisor-kernel-'));
  scriptPath = join(workDir, 'ticking.bt');
  await writeFile(scriptPath, TICKING_SCRIPT);
});

afterAll(async () => {
  await rm(workDir, { recursive: true, force: true });
});

async function bpftraceChildrenOf(pid: number): Promise<string[]> {
  const { stdout } = await execa('pgrep', ['-x', 'bpftrace', '-P', String(pid)], { reject: false });
  return stdout.split('\n').filter((line) => line !== '');
}

/** Gone, or a zombie waiting for a reaper: either way no longer running. */
async function isRunning(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('BpftraceSupervisor with the real bpftrace', () => {
  it('restarts a bpftrace killed with SIGKILL, counts the restart, is ready again, and stop() leaves no bpftrace', async () => {
    const registry = new Registry();
    const { logger, records } = capturingLogger();
    const events: ProbeEvent[] = [];
    const supervisor = new BpftraceSupervisor({
      probes: [{ name: 'ticking', script: scriptPath, args: [] }],
      decoderFor: (probe) => createLineDecoder(probe.name, String),
      onEvent: (event) => events.push(event),
      spawn: createExecaProbeSpawner(),
      registry,
      logger,
      commandPrefix: await parentDeathPrefix(),
      backoff: { initialMs: 200, maxMs: 1_000, jitter: 0 },
    });
    try {
      supervisor.start();
      await eventually(
        'bpftrace attached and ticking',
        () => supervisor.isReady() && events.length >= 2,
        20_000,
      );
      const firstPid = supervisor.status()[0]!.pid!;
      expect(await bpftraceChildrenOf(process.pid)).toEqual([String(firstPid)]);

      process.kill(firstPid, 'SIGKILL');
      await eventually('the probe to go down', () => !supervisor.isReady());
      await eventually('the restarted probe to attach', () => supervisor.isReady(), 20_000);
      const secondPid = supervisor.status()[0]!.pid!;
      expect(secondPid).not.toBe(firstPid);
      expect(
        await metricValue(registry, 'conntrack_observer_probe_restarts_total', {
          probe: 'ticking',
        }),
      ).toBe(1);
      expect(await metricValue(registry, 'conntrack_observer_probe_up', { probe: 'ticking' })).toBe(
        1,
      );
      const before = events.length;
      await eventually('events from the restarted probe', () => events.length >= before + 2);
      expect(
        records.filter((record) => record.level >= 50 && record.msg !== 'probe exited'),
      ).toEqual([]);

      await supervisor.stop();
      expect(isAlive(firstPid)).toBe(false);
      expect(isAlive(secondPid)).toBe(false);
      expect(await bpftraceChildrenOf(process.pid)).toEqual([]);
    } finally {
      await supervisor.stop();
    }
  }, 60_000);

  it('takes its bpftrace down with it when the agent is killed with SIGKILL', async () => {
    // node itself with the tsx loader, not the tsx CLI, which would run the host in a child of its own.
    const host = execa(process.execPath, ['--import', 'tsx', hostScript, scriptPath], {
      buffer: false,
      reject: false,
      stdin: 'ignore',
    });
    let probePid: number | undefined;
    try {
      // Not execa's line iterator: leaving it early waits for the process to end.
      const lines = createInterface({ input: host.stdout! });
      const [firstLine] = (await once(lines, 'line')) as [string];
      lines.close();
      probePid = Number(firstLine);
      expect(probePid).toBeGreaterThan(0);
      expect(await isRunning(probePid!)).toBe(true);

      host.kill('SIGKILL');
      await host;
      const deadline = Date.now() + 5_000;
      while ((await isRunning(probePid!)) && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      expect(await isRunning(probePid!)).toBe(false);
    } finally {
      host.kill('SIGKILL');
      if (probePid !== undefined && (await isRunning(probePid))) process.kill(probePid, 'SIGKILL');
    }
  }, 60_000);
});
