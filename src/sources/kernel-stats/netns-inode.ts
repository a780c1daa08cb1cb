import { stat } from 'node:fs/promises';

export type StatInode = (path: string) => Promise<{ ino: number | bigint }>;

/**
 * Inode of the network namespace of a process (`self` for the agent's own): the number
 * probes print as `netns`, i.e. what `readlink /proc/PID/ns/net` shows in brackets.
 * Undefined when the process is gone or its namespace unreadable.
 */
export async function netnsInodeOf(
  pid: number | 'self',
  procRoot = '/proc',
  statInode: StatInode = stat,
): Promise<number | undefined> {
  try {
    return Number((await statInode(`${procRoot}/${pid}/ns/net`)).ino);
  } catch {
    return undefined;
  }
}

/** The stat file of the namespace a process is in (`self`: the agent's own). */
export function conntrackStatPathOf(pid: number | 'self', procRoot = '/proc'): string {
  return `${procRoot}/${pid}/net/stat/nf_conntrack`;
}
