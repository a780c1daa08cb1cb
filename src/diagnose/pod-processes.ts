import type { HostFiles } from './host-files.js';

/** One process per container: the first found in each distinct root directory. */
export interface ContainerProcess {
  readonly pid: number;
  /** The process's command name (`/proc/<pid>/comm`). */
  readonly command: string;
  /** The 64-hex container id from its cgroup path, when the runtime put one there. */
  readonly containerId?: string;
  readonly netnsInode?: number;
}

export type ProcessTarget =
  | { readonly by: 'pod-uid'; readonly uid: string }
  | { readonly by: 'netns'; readonly inode: number };

const CONTAINER_ID = /([0-9a-f]{64})/;
/** The sandbox ("pause") holds the namespaces and resolves nothing. */
const SANDBOX_COMMANDS = new Set(['pause']);

/**
 * Finds the processes of a pod from the node (hostPID): by the pod's uid in their cgroup path
 * (`kubepods-…-pod<uid>.slice` with the systemd driver, `…/pod<uid>/…` with cgroupfs), or by
 * their network namespace. Reads only /proc.
 */
export async function findContainerProcesses(
  files: HostFiles,
  procRoot: string,
  target: ProcessTarget,
): Promise<ContainerProcess[]> {
  const uidForms =
    target.by === 'pod-uid' ? [`pod${target.uid}`, `pod${target.uid.replaceAll('-', '_')}`] : [];
  const byRoot = new Map<string, ContainerProcess>();
  for (const pid of await listPids(files, procRoot)) {
    let containerId: string | undefined;
    let netnsInode: number | undefined;
    if (target.by === 'pod-uid') {
      const cgroup = await files.readText(`${procRoot}/${pid}/cgroup`, 16 * 1024);
      if (!cgroup || !uidForms.some((form) => cgroup.includes(form))) continue;
      containerId = CONTAINER_ID.exec(cgroup)?.[1];
    } else {
      netnsInode = await netnsInodeOfPid(files, procRoot, pid);
      if (netnsInode !== target.inode) continue;
    }
    const command = (await files.readText(`${procRoot}/${pid}/comm`, 256))?.trim() ?? '';
    if (SANDBOX_COMMANDS.has(command)) continue;
    const root = await files.identity(`${procRoot}/${pid}/root`);
    if (root === undefined || byRoot.has(root)) continue;
    byRoot.set(root, {
      pid,
      command,
      ...(containerId ? { containerId } : {}),
      ...(netnsInode ? { netnsInode } : {}),
    });
  }
  return [...byRoot.values()];
}

export async function listPids(files: HostFiles, procRoot: string): Promise<number[]> {
  const entries = (await files.list(procRoot)) ?? [];
  return entries
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number)
    .sort((a, b) => a - b);
}

export async function netnsInodeOfPid(
  files: HostFiles,
  procRoot: string,
  pid: number | 'self',
): Promise<number | undefined> {
  const link = await files.readLink(`${procRoot}/${pid}/ns/net`);
  const match = link ? /^net:\[(\d+)\]$/.exec(link) : null;
  return match?.[1] ? Number(match[1]) : undefined;
}
