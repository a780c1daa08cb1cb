import { accessSync, constants, existsSync } from 'node:fs';

/**
 * `ip netns` keeps its namespaces in /run/netns (a path compiled into iproute2). In the agent's
 * own pod the root file system is read-only, so `doctor --reproduce` started there (`kubectl
 * exec`) re-runs itself in a private mount namespace with a small tmpfs on /run/netns: the lab
 * writes only to that tmpfs, which no other process sees and which vanishes with the doctor.
 */
export const NETNS_RUN_DIR = '/run/netns';

/** Set in the re-run doctor: it is in its private mount namespace already. */
export const PRIVATE_NETNS_ENV = 'CONNTRACK_RACE_OBSERVER_PRIVATE_NETNS';

/** At most four namespace files and the tmpfs's own bookkeeping: 1 MiB is ample. */
const TMPFS_OPTIONS = 'size=1m,mode=0755,nosuid,nodev,noexec';

/** Whether `ip netns add` can create its files here: /run/netns, or /run to make it in. */
export function netnsDirWritable(
  dir = NETNS_RUN_DIR,
  canWrite: (path: string) => boolean = writable,
  exists: (path: string) => boolean = existsSync,
): boolean {
  return exists(dir) ? canWrite(dir) : canWrite(dir.slice(0, dir.lastIndexOf('/')) || '/');
}

function writable(path: string): boolean {
  try {
    // access(2) answers EROFS for a read-only mount, as the write itself would.
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * The command that runs `command` again in a private mount namespace with a tmpfs on
 * /run/netns. `setpriv --pdeathsig TERM` ties it to the process that starts it: if that one is
 * killed (even with SIGKILL), the re-run doctor gets SIGTERM and removes its lab. The image has
 * /run/netns as an empty directory to mount on; elsewhere it is made if /run allows.
 */
export function privateNetnsCommand(command: readonly string[]): {
  file: string;
  args: string[];
} {
  const script = [
    `[ -d ${NETNS_RUN_DIR} ] || mkdir ${NETNS_RUN_DIR} 2>/dev/null || {`,
    `  echo "conntrack-race-observer doctor: ${NETNS_RUN_DIR} is missing and / is read-only: no place for the lab's namespaces (REPRODUCE_LAB_FAILED)" >&2; exit 3; }`,
    `mount -t tmpfs -o ${TMPFS_OPTIONS} cro-repro-netns ${NETNS_RUN_DIR} || {`,
    `  echo "conntrack-race-observer doctor: cannot mount a tmpfs on ${NETNS_RUN_DIR} (REPRODUCE_NOT_PERMITTED)" >&2; exit 3; }`,
    'exec "$@"',
  ].join('\n');
  return {
    file: 'unshare',
    args: [
      '--mount',
      '--propagation',
      'private',
      '--',
      'setpriv',
      '--pdeathsig',
      'TERM',
      '--',
      '/bin/sh',
      '-c',
      script,
      'doctor-private-netns',
      ...command,
    ],
  };
}
