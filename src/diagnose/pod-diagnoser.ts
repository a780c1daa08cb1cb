import type { ContainerDiagnosis, PodDiagnosis, PodDnsSpec } from '../events/diagnosis.js';
import type { Clock } from '../shared/clock.js';
import { resolveInRoot, type HostFiles } from './host-files.js';
import { detectLibc } from './libc.js';
import { classifyNameserver, type NameserverContext } from './nameserver-kind.js';
import {
  findContainerProcesses,
  type ContainerProcess,
  type ProcessTarget,
} from './pod-processes.js';
import { parseResolvConf } from './resolv-conf.js';

export interface PodDiagnoserOptions {
  readonly files: HostFiles;
  readonly procRoot: string;
  readonly clock: Clock;
  /** Read at each diagnosis: the kube-dns ClusterIP may become known later. */
  readonly nameserverContext: () => NameserverContext;
}

export interface PodDiagnosisRequest {
  readonly target: ProcessTarget;
  readonly foundBy: PodDiagnosis['foundBy'];
  readonly spec?: PodDnsSpec;
  /** Container id (64 hex) → container name, from the pod's status. */
  readonly containerNames?: ReadonlyMap<string, string>;
}

/**
 * Reads what decides a pod's DNS behaviour from the node: per container, the C library and the
 * effective /etc/resolv.conf, both through `/proc/<pid>/root` of one of its processes. Needs
 * hostPID and read access to /proc (root, or CAP_SYS_PTRACE for other users' processes).
 * Undefined when no process of the pod is visible.
 */
export async function diagnosePod(
  options: PodDiagnoserOptions,
  request: PodDiagnosisRequest,
): Promise<PodDiagnosis | undefined> {
  const processes = await findContainerProcesses(options.files, options.procRoot, request.target);
  if (processes.length === 0) return undefined;
  const context = options.nameserverContext();
  const containers: ContainerDiagnosis[] = [];
  for (const process of processes) {
    containers.push(await diagnoseContainer(options, process, context, request.containerNames));
  }
  const netnsInode =
    request.target.by === 'netns' ? request.target.inode : processes[0]?.netnsInode;
  return {
    status: 'diagnosed',
    foundBy: request.foundBy,
    ...(netnsInode !== undefined ? { netnsInode } : {}),
    containers,
    ...(request.spec ? { spec: request.spec } : {}),
    diagnosedAtMs: options.clock.nowMs(),
  };
}

async function diagnoseContainer(
  options: PodDiagnoserOptions,
  process: ContainerProcess,
  context: NameserverContext,
  containerNames: ReadonlyMap<string, string> | undefined,
): Promise<ContainerDiagnosis> {
  const { files, procRoot } = options;
  const root = `${procRoot}/${process.pid}/root`;
  const libc = await detectLibc(files, root, `${procRoot}/${process.pid}/exe`);
  const resolvPath = await resolveInRoot(files, root, 'etc/resolv.conf');
  const text = resolvPath ? await files.readText(resolvPath, 64 * 1024) : undefined;
  const resolvConf = text === undefined ? undefined : parseResolvConf(text);
  const name =
    (process.containerId ? containerNames?.get(process.containerId) : undefined) ?? process.command;
  return {
    pid: process.pid,
    name,
    libc,
    ...(resolvConf ? { resolvConf } : {}),
    nameservers: (resolvConf?.nameservers ?? []).map((address) =>
      classifyNameserver(address, context),
    ),
  };
}
