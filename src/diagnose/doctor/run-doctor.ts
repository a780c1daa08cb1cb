import { setTimeout as sleep } from 'node:timers/promises';
import type { CapabilityFiles, CommandRunner } from '../../detect/capabilities.js';
import { parseDoctorOptions } from '../../config/doctor-options.js';
import type { Clock } from '../../shared/clock.js';
import type { HostFiles } from '../host-files.js';
import { ReproduceError } from '../reproduce/errors.js';
import { runReproduce, type ReproduceDependencies } from '../reproduce/run-reproduce.js';
import { renderDoctorText } from './render-text.js';
import { buildDoctorReport } from './report.js';

export const DOCTOR_EXIT = { clean: 0, findings: 1, usage: 2, failed: 3 } as const;

export interface DoctorIo {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

export interface DoctorSystem {
  readonly files: HostFiles;
  readonly capabilityFiles: CapabilityFiles;
  readonly run: CommandRunner;
  readonly clock: Clock;
  readonly procRoot: string;
  /** What `--reproduce` builds its lab with; without it, `--reproduce` is refused. */
  readonly reproduceLab?: ReproduceDependencies;
}

/** Runs `doctor` with the arguments after it; resolves to the exit code. */
export async function runDoctor(
  argv: readonly string[],
  io: DoctorIo,
  system: DoctorSystem,
): Promise<number> {
  const parsed = parseDoctorOptions(argv);
  if (parsed.kind === 'exit') {
    io.stdout(parsed.output);
    return DOCTOR_EXIT.clean;
  }
  if (parsed.kind === 'error') {
    io.stderr(`conntrack-race-observer doctor: ${parsed.message}\n`);
    return DOCTOR_EXIT.usage;
  }
  const { options } = parsed;
  const netnsPid = options.netnsPid ?? 'self';
  const reproduceSeconds = options.reproduceSeconds;
  const { reproduceLab: lab, ...host } = system;
  if (reproduceSeconds !== undefined && lab === undefined) {
    io.stderr('conntrack-race-observer doctor: --reproduce is not available here\n');
    return DOCTOR_EXIT.usage;
  }
  try {
    const report = await buildDoctorReport({
      ...host,
      netnsPid,
      commandPrefix:
        netnsPid === 'self' ? [] : ['nsenter', `--net=${host.procRoot}/${netnsPid}/ns/net`],
      sleep: (ms) => sleep(ms),
      bpftrace: options.bpftrace,
      nodeLocalDnsIps: options.nodeLocalDns,
      clusterDnsIps: options.clusterDns,
      intervalMs: options.intervalMs,
      ...(reproduceSeconds !== undefined && lab !== undefined
        ? { reproduce: (node) => runReproduce(lab, reproduceSeconds, node) }
        : {}),
    });
    io.stdout(options.json ? `${JSON.stringify(report, null, 2)}\n` : renderDoctorText(report));
    return report.findings.length > 0 ? DOCTOR_EXIT.findings : DOCTOR_EXIT.clean;
  } catch (error) {
    if (error instanceof ReproduceError) {
      io.stderr(
        `conntrack-race-observer doctor: could not reproduce (${error.code}): ${error.message}\n`,
      );
      return DOCTOR_EXIT.failed;
    }
    io.stderr(`conntrack-race-observer doctor: could not read the node: ${String(error)}\n`);
    return DOCTOR_EXIT.failed;
  }
}
