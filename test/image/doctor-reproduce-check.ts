/**
 * `doctor --reproduce` as an operator runs it with `kubectl exec` into the running agent's
 * container (read-only root, the image's generators): the report against the kernel counters of
 * its own lab (read through an outside handle on the lab's namespaces), the exit code the docs
 * promise, and nothing of the lab left afterwards.
 */
import { Ajv } from 'ajv';
import { execa } from 'execa';
import { doctorReportSchema } from '../../src/diagnose/doctor/report-schema.js';
import type { DoctorReport } from '../../src/diagnose/doctor/report.js';
import { holdersOf, watchForReproduceLab, type HeldLab } from './reproduce-lab-watch.js';

export interface ExecTarget {
  /** The command that runs `command` inside the running container, as `kubectl exec` would. */
  readonly exec: (command: readonly string[]) => { file: string; args: string[] };
  /** The image's entrypoint (`node /app/dist/main.js`). */
  readonly entrypoint: readonly string[];
}

export interface DoctorCheckResult {
  readonly ok: boolean;
  readonly detail: string;
  readonly summary: Record<string, unknown>;
}

const validate = new Ajv({ allErrors: true }).compile(doctorReportSchema);
/** A lab too quick to be seen by the watcher is run again, a bounded number of times. */
const MAX_RUNS = 3;

async function hostLabNamespaces(): Promise<string[]> {
  const { stdout } = await execa('ip', ['netns', 'list'], { reject: false });
  return stdout
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith('cro-repro-'));
}

export async function checkDoctorReproduce(
  target: ExecTarget,
  seconds: number,
): Promise<DoctorCheckResult> {
  for (let run = 1; run <= MAX_RUNS; run += 1) {
    const command = target.exec([
      ...target.entrypoint,
      'doctor',
      '--json',
      '--reproduce',
      '--reproduce-seconds',
      String(seconds),
    ]);
    const started = Date.now();
    const doctor = execa(command.file, command.args, { reject: false, timeout: 300_000 });
    const watched = watchForReproduceLab(doctor);
    const [outcome, held] = await Promise.all([doctor, watched]);
    if (!held) {
      if (run < MAX_RUNS) continue;
      return {
        ok: false,
        detail: `the lab was never seen from outside in ${MAX_RUNS} runs (exit ${outcome.exitCode}): ${outcome.stderr.slice(-500)}`,
        summary: {},
      };
    }
    try {
      return await judge(outcome, held, Date.now() - started);
    } finally {
      held.release();
    }
  }
  throw new Error('unreachable');
}

async function judge(
  outcome: { exitCode?: number; stdout: string; stderr: string },
  held: HeldLab,
  durationMs: number,
): Promise<DoctorCheckResult> {
  let report: DoctorReport;
  try {
    report = JSON.parse(outcome.stdout) as DoctorReport;
  } catch {
    return {
      ok: false,
      detail: `exit ${outcome.exitCode}, no JSON report: ${outcome.stderr.slice(-800)}`,
      summary: {},
    };
  }
  const problems: string[] = [];
  if (!validate(report)) problems.push(`report not valid: ${JSON.stringify(validate.errors)}`);
  const reproduce = report.reproduce;
  if (!reproduce) return { ok: false, detail: 'no reproduce section in the report', summary: {} };
  if (reproduce.generators.origin !== 'installed')
    problems.push(
      `generators ${reproduce.generators.origin} in ${reproduce.generators.dir}, not the image's`,
    );
  if ([...reproduce.namespaces].sort().join() !== Object.values(held.names).sort().join())
    problems.push(
      `the report names ${reproduce.namespaces.join(', ')}; the lab seen was ${Object.values(held.names).join(', ')}`,
    );
  // The lab node is new: its counters after the run are the deltas of both scenarios together.
  const kernel = await held.nodeCounters();
  const scenarios = reproduce.scenarios;
  const sum = (pick: (s: (typeof scenarios)[number]) => number): number =>
    scenarios.reduce((total, scenario) => total + pick(scenario), 0);
  const dropped = sum((s) => s.dropped);
  const resolved = sum((s) => s.resolved);
  if (dropped !== kernel['insert_failed'])
    problems.push(`dropped ${dropped}, the lab node's insert_failed ${kernel['insert_failed']}`);
  if (resolved !== kernel['clash_resolve'])
    problems.push(`resolved ${resolved}, the lab node's clash_resolve ${kernel['clash_resolve']}`);
  for (const scenario of reproduce.scenarios) {
    if (
      scenario.dropped !== scenario.kernel['insert_failed'] ||
      scenario.resolved !== scenario.kernel['clash_resolve']
    )
      problems.push(
        `${scenario.scenario}: ${scenario.dropped}/${scenario.resolved} against its deltas ${JSON.stringify(scenario.kernel)}`,
      );
  }
  const snat = reproduce.scenarios.find((s) => s.scenario === 'snat-race');
  const dnat = reproduce.scenarios.find((s) => s.scenario === 'dnat-clash');
  // What this kernel does (FACTS): drops SNAT races, resolves DNAT clashes.
  if (snat?.verdict.id !== 'drops-snat-races') problems.push(`SNAT verdict ${snat?.verdict.id}`);
  if (dnat?.verdict.id !== 'resolves-dnat-clashes')
    problems.push(`DNAT verdict ${dnat?.verdict.id}`);
  // docs/diagnosis.md: 0 nothing at risk, 1 findings; a reproduced drop is a finding.
  const expectedExit = report.findings.length > 0 ? 1 : 0;
  if (
    outcome.exitCode !== expectedExit ||
    !report.findings.some((f) => f.id === 'reproduced-drops-snat-races')
  )
    problems.push(
      `exit ${outcome.exitCode} with findings ${report.findings.map((f) => f.id).join(', ')}`,
    );
  const inodes = held.inodes;
  held.release();
  const holders = holdersOf(inodes);
  if (holders.length > 0)
    problems.push(`the lab's namespaces are still held: ${holders.join('; ')}`);
  const onHost = await hostLabNamespaces();
  if (onHost.length > 0)
    problems.push(`lab namespaces in the host's /run/netns: ${onHost.join(', ')}`);
  const summary = {
    exitCode: outcome.exitCode,
    durationMs,
    snat: { rounds: snat?.rounds, dropped: snat?.dropped, resolved: snat?.resolved },
    dnat: { rounds: dnat?.rounds, dropped: dnat?.dropped, resolved: dnat?.resolved },
    labNodeKernel: {
      insert_failed: kernel['insert_failed'],
      clash_resolve: kernel['clash_resolve'],
    },
  };
  return {
    ok: problems.length === 0,
    detail:
      problems.length > 0
        ? problems.join('; ')
        : `exit ${outcome.exitCode}; SNAT ${snat?.dropped} dropped in ${snat?.rounds} rounds, DNAT ${dnat?.resolved} resolved in ${dnat?.rounds} rounds; the lab node counted insert_failed ${kernel['insert_failed']}, clash_resolve ${kernel['clash_resolve']}; generators from ${reproduce.generators.dir}; no namespace held afterwards`,
    summary,
  };
}
