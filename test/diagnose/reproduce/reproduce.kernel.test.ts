import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Ajv } from 'ajv';
import { execa } from 'execa';
import { doctorReportSchema } from '../../../src/diagnose/doctor/report-schema.js';
import type { DoctorReport } from '../../../src/diagnose/doctor/report.js';
import {
  GENERATOR_SOURCE_DIR,
  INSTALLED_GENERATOR_DIR,
} from '../../../src/diagnose/reproduce/generators.js';
import {
  createExecaLabRunner,
  type LabRunner,
} from '../../../src/diagnose/reproduce/lab-runner.js';
import { createIsRunning } from '../../../src/diagnose/reproduce/process-liveness.js';
import { REPRODUCE_PREFIX } from '../../../src/diagnose/reproduce/lab-names.js';
import {
  runReproduce,
  type ReproduceDependencies,
} from '../../../src/diagnose/reproduce/run-reproduce.js';
import { counterDelta, readConntrackStats, type ConntrackStats } from '../../lab/index.js';
import { listNetns } from '../../lab/netns.js';
import { repoRoot } from '../../deploy/support/repo-paths.js';
import { waitFor } from '../../support/eventually.js';

const cacheDir = mkdtempSync(join(tmpdir(), 'cro-repro-test-cache-'));
afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

function dependencies(run: LabRunner, signal?: AbortSignal): ReproduceDependencies {
  return {
    run,
    pid: process.pid,
    labId: () => randomBytes(3).toString('hex'),
    kill: (pid, killSignal) => process.kill(pid, killSignal),
    isAlive: createIsRunning('/proc'),
    sleep: (ms) => sleep(ms),
    nowMs: () => performance.now(),
    signal,
    generators: {
      installedDir: INSTALLED_GENERATOR_DIR,
      sourceDir: GENERATOR_SOURCE_DIR,
      cacheDir,
    },
  };
}

async function labNamespaces(ownerPid?: number): Promise<string[]> {
  const prefix = ownerPid === undefined ? REPRODUCE_PREFIX : `${REPRODUCE_PREFIX}${ownerPid}-`;
  return (await listNetns()).filter((name) => name.startsWith(prefix));
}

/**
 * The real runner, plus an oracle: whenever the doctor reads the lab node's counters from
 * /proc/net/stat/nf_conntrack, conntrack(8) reads them too, over netlink, tagged with the
 * scenario whose generator ran last.
 */
function observedRunner() {
  const real = createExecaLabRunner();
  const readings: { after: string; stats: ConntrackStats }[] = [];
  let lastGenerator = 'none';
  const run: LabRunner = async (file, args, options) => {
    const outcome = await real(file, args, options);
    const generator = args.find((arg) => /\/(snat-race|dnat-clash)$/.test(arg));
    if (generator) lastGenerator = generator.endsWith('snat-race') ? 'snat-race' : 'dnat-clash';
    if (args.at(-1) === '/proc/net/stat/nf_conntrack' && args[2]?.endsWith('-node')) {
      readings.push({ after: lastGenerator, stats: await readConntrackStats(args[2]) });
    }
    return outcome;
  };
  const last = (after: string): ConntrackStats => {
    const found = readings.filter((reading) => reading.after === after).at(-1);
    if (!found) throw new Error(`no counter reading after ${after}`);
    return found.stats;
  };
  return { run, last };
}

const validate = new Ajv({ allErrors: true }).compile(doctorReportSchema);

describe('doctor --reproduce on this kernel', () => {
  it('reports as dropped and resolved exactly what the kernel of its own lab counted, and leaves no namespace', async () => {
    const { run, last } = observedRunner();

    const report = await runReproduce(dependencies(run), 10, undefined);

    const [snat, dnat] = report.scenarios;
    const snatKernel = counterDelta(last('none'), last('snat-race'));
    const dnatKernel = counterDelta(last('snat-race'), last('dnat-clash'));
    expect(snat?.scenario).toBe('snat-race');
    expect(snat?.dropped).toBe(snatKernel['insert_failed']);
    expect(snat?.resolved).toBe(snatKernel['clash_resolve']);
    expect(dnat?.scenario).toBe('dnat-clash');
    expect(dnat?.dropped).toBe(dnatKernel['insert_failed']);
    expect(dnat?.resolved).toBe(dnatKernel['clash_resolve']);
    // What this kernel (6.x, clash resolution since 5.6) does, as FACTS measured it.
    expect(snat?.dropped).toBeGreaterThan(0);
    expect(snat?.verdict.id).toBe('drops-snat-races');
    expect(dnat?.resolved).toBeGreaterThan(0);
    expect(dnat?.verdict.id).toBe('resolves-dnat-clashes');
    process.stdout.write(
      `reproduce: snat ${snat?.dropped} dropped / ${snat?.resolved} resolved (kernel ${snatKernel['insert_failed']}/${snatKernel['clash_resolve']}) in ${snat?.rounds} rounds; ` +
        `dnat ${dnat?.dropped} dropped / ${dnat?.resolved} resolved (kernel ${dnatKernel['insert_failed']}/${dnatKernel['clash_resolve']}) in ${dnat?.rounds} rounds\n`,
    );
    expect(report.namespaces).toHaveLength(4);
    expect(await labNamespaces(process.pid)).toEqual([]);
  });

  it('removes its lab when aborted mid-race and says it was interrupted', async () => {
    const abort = new AbortController();
    const run = createExecaLabRunner();
    // Aborted as soon as the first race has started: a whole run can take less than a second
    // on this machine, so any later moment could come after its end.
    const started: LabRunner = (file, args, options) => {
      const running = run(file, args, options);
      if (args.some((arg) => arg.endsWith('/snat-race'))) setImmediate(() => abort.abort());
      return running;
    };

    await expect(
      runReproduce(dependencies(started, abort.signal), 30, undefined),
    ).rejects.toMatchObject({
      code: 'REPRODUCE_INTERRUPTED',
    });
    expect(await labNamespaces(process.pid)).toEqual([]);
  });

  it('as a command: SIGTERM removes the lab; after a SIGKILL the next run removes the leftovers first', async () => {
    const start = () =>
      execa(
        'node',
        [
          '--import',
          'tsx',
          'src/main.ts',
          'doctor',
          '--reproduce',
          '--reproduce-seconds',
          '60',
          '--interval',
          '0.1',
        ],
        { cwd: repoRoot, reject: false, env: { XDG_CACHE_HOME: cacheDir } },
      );
    // A whole run can take under a second here: each signal goes as soon as the lab appears.
    const labAppears = (pid: number): Promise<string[]> =>
      waitFor(
        `the lab of ${pid}`,
        async () => {
          const names = await labNamespaces(pid);
          return names.length > 0 ? names : undefined;
        },
        60_000,
        10,
      );

    const terminated = start();
    await labAppears(terminated.pid!);
    terminated.kill('SIGTERM');
    const stopped = await terminated;
    expect(stopped.exitCode).toBe(3);
    expect(stopped.stderr).toContain('REPRODUCE_INTERRUPTED');
    expect(await labNamespaces(terminated.pid)).toEqual([]);

    const killed = start();
    await labAppears(killed.pid!);
    killed.kill('SIGKILL');
    await killed;
    // An `ip netns add` it had started finishes on its own.
    await sleep(300);
    const left = await labNamespaces(killed.pid);
    expect(left.length).toBeGreaterThan(0);

    const next = await execa(
      'node',
      [
        '--import',
        'tsx',
        'src/main.ts',
        'doctor',
        '--json',
        '--reproduce',
        '--reproduce-seconds',
        '2',
        '--interval',
        '0.1',
      ],
      { cwd: repoRoot, reject: false, env: { XDG_CACHE_HOME: cacheDir } },
    );
    const parsed: unknown = JSON.parse(next.stdout);
    expect(validate(parsed) ? [] : validate.errors).toEqual([]);
    const report = parsed as DoctorReport;
    expect(report.reproduce?.staleRemoved).toEqual([...left].sort());
    expect(next.exitCode).toBe(report.findings.length > 0 ? 1 : 0);
    expect(await labNamespaces()).toEqual([]);
  });
});
