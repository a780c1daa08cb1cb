import { setTimeout as sleep } from 'node:timers/promises';
import type { CapabilityFiles, CommandRunner } from '../../detect/capabilities.js';
import { mayHaveKubernetesConfig } from '../../attribute/kubernetes/connection-hint.js';
import { parseDoctorOptions, type DoctorOptions } from '../../config/doctor-options.js';
import type { Clock } from '../../shared/clock.js';
import type { HostFiles } from '../host-files.js';
import { ReproduceError } from '../reproduce/errors.js';
import { runReproduce, type ReproduceDependencies } from '../reproduce/run-reproduce.js';
import { renderDoctorText } from './render-text.js';
import { buildDoctorReport, type DoctorKubernetesAccess } from './report.js';

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
  /** The environment the entry point read: NODE_NAME, KUBECONFIG, in-cluster variables. */
  readonly env?: DoctorEnvironment;
  /** Where a pod's service-account credentials are mounted (tests point it elsewhere). */
  readonly serviceAccountDir?: string;
}

export interface DoctorEnvironment {
  readonly NODE_NAME?: string;
  readonly KUBECONFIG?: string;
  readonly KUBERNETES_SERVICE_HOST?: string;
  readonly KUBERNETES_SERVICE_PORT?: string;
}

/** Runs `doctor` with the arguments after it; resolves to the exit code. */
export async function runDoctor(
  argv: readonly string[],
  io: DoctorIo,
  system: DoctorSystem,
): Promise<number> {
  const env = system.env ?? {};
  const parsed = parseDoctorOptions(argv, env);
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
  const { reproduceLab: lab, serviceAccountDir, ...host } = system;
  if (reproduceSeconds !== undefined && lab === undefined) {
    io.stderr('conntrack-race-observer doctor: --reproduce is not available here\n');
    return DOCTOR_EXIT.usage;
  }
  const kubernetes = await kubernetesAccess(options, env, serviceAccountDir);
  if (typeof kubernetes === 'string') {
    io.stderr(`conntrack-race-observer doctor: ${kubernetes}\n`);
    return DOCTOR_EXIT.usage;
  }
  try {
    const report = await buildDoctorReport({
      files: host.files,
      capabilityFiles: host.capabilityFiles,
      run: host.run,
      clock: host.clock,
      procRoot: host.procRoot,
      netnsPid,
      commandPrefix:
        netnsPid === 'self' ? [] : ['nsenter', `--net=${host.procRoot}/${netnsPid}/ns/net`],
      sleep: (ms) => sleep(ms),
      bpftrace: options.bpftrace,
      nodeLocalDnsIps: options.nodeLocalDns,
      clusterDnsIps: options.clusterDns,
      intervalMs: options.intervalMs,
      ...(kubernetes ? { kubernetes } : {}),
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
    if (error instanceof Error && 'code' in error && error.code === 'ERR_DOCTOR_POD_LIST') {
      io.stderr(`conntrack-race-observer doctor: ${error.message}\n`);
      return DOCTOR_EXIT.failed;
    }
    io.stderr(`conntrack-race-observer doctor: could not read the node: ${String(error)}\n`);
    return DOCTOR_EXIT.failed;
  }
}

/**
 * Resolves the API server as the agent does (`--kubeconfig` > KUBECONFIG > in-cluster);
 * undefined when nothing configures Kubernetes, a message when something does but is unusable.
 * client-node is loaded only when something could configure Kubernetes.
 */
async function kubernetesAccess(
  options: DoctorOptions,
  env: DoctorEnvironment,
  serviceAccountDir: string | undefined,
): Promise<DoctorKubernetesAccess | string | undefined> {
  const inputs = {
    ...(options.kubeconfig ? { kubeconfigFlag: options.kubeconfig } : {}),
    ...(env.KUBECONFIG ? { kubeconfigEnv: env.KUBECONFIG } : {}),
    ...(serviceAccountDir ? { serviceAccountDir } : {}),
  };
  if (!mayHaveKubernetesConfig(inputs)) return undefined;
  const { KubeConfigError, resolveKubernetesConnection } =
    await import('../../attribute/kubernetes/connection.js');
  const resolved = resolveKubernetesConnection({
    ...inputs,
    inCluster: { host: env.KUBERNETES_SERVICE_HOST, port: env.KUBERNETES_SERVICE_PORT },
  });
  if (resolved === undefined) return undefined;
  if (resolved instanceof KubeConfigError)
    return `invalid Kubernetes configuration (${resolved.code}): ${resolved.message}`;
  if (!options.nodeName) {
    return `a Kubernetes configuration was found (${resolved.source}: ${resolved.origin}) but no node name: pass --node-name or set NODE_NAME`;
  }
  const { nodePodLister } = await import('./node-pod-lister.js');
  return {
    nodeName: options.nodeName,
    source: resolved.source,
    server: resolved.server,
    listPods: nodePodLister(resolved.kubeConfig),
  };
}
