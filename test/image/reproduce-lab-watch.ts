/**
 * An outside witness of `doctor --reproduce` run inside the image: it finds the lab's four
 * network namespaces in whatever mount namespace the doctor keeps them (a private tmpfs on
 * /run/netns in the agent's read-only pod), opens each, and so keeps them alive after the
 * doctor removed its lab. A lab node namespace is new, so its conntrack counters start at 0:
 * what they read after the run is what the doctor's own races made the kernel count. Closing
 * the handles then must leave no process or mount anywhere holding a namespace of the lab.
 */
import { closeSync, fstatSync, openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawn } from 'node:child_process';
import { parseConntrackStatFile } from '../../src/sources/kernel-stats/conntrack-stat-file.js';

const ROLES = ['node', 'pod1', 'pod2', 'up'] as const;
const labName = /^cro-repro-(\d+)-([0-9a-f]{6})-(node|pod1|pod2|up)$/;

export interface HeldLab {
  /** The namespace names, by role. */
  readonly names: Readonly<Record<(typeof ROLES)[number], string>>;
  /** The namespaces' inode numbers, as /proc/PID/ns/net and mountinfo show them. */
  readonly inodes: readonly number[];
  /** The lab node's conntrack counters, summed over CPUs. */
  nodeCounters(): Promise<Record<string, number>>;
  /** Lets the namespaces go. */
  release(): void;
}

function pids(): number[] {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .map(Number);
}

function safely<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch {
    return undefined;
  }
}

/** Runs a command with `fd` as its fd 3; resolves to its stdout, rejects on a failure. */
function readWithFd3(file: string, args: string[], fd: number): Promise<{ stdout: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe', fd] });
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolve({ stdout }) : reject(new Error(`${file} exited ${code}: ${stderr}`)),
    );
  });
}

/** Opens the four namespaces of one lab if `pid` sees them all in its /run/netns. */
function holdFrom(pid: number): HeldLab | undefined {
  const dir = `/proc/${pid}/root/run/netns`;
  const entries = safely(() => readdirSync(dir)) ?? [];
  const byLab = new Map<string, Map<string, string>>();
  for (const entry of entries) {
    const match = labName.exec(entry);
    if (!match?.[3]) continue;
    const lab = `${match[1]}-${match[2]}`;
    byLab.set(lab, (byLab.get(lab) ?? new Map<string, string>()).set(match[3], entry));
  }
  for (const roles of byLab.values()) {
    if (roles.size !== ROLES.length) continue;
    const fds: number[] = [];
    for (const role of ROLES) {
      const fd = safely(() => openSync(`${dir}/${roles.get(role)}`, 'r'));
      if (fd === undefined) break;
      fds.push(fd);
    }
    if (fds.length !== ROLES.length) {
      fds.forEach((fd) => closeSync(fd));
      continue;
    }
    const names = Object.fromEntries(ROLES.map((role) => [role, roles.get(role)!])) as Record<
      (typeof ROLES)[number],
      string
    >;
    const nodeFd = fds[0]!;
    let released = false;
    return {
      names,
      inodes: fds.map((fd) => fstatSync(fd).ino),
      async nodeCounters() {
        // nsenter enters the namespace the handle passed as its fd 3 names.
        const read = await readWithFd3(
          'nsenter',
          ['--net=/proc/self/fd/3', 'cat', '/proc/net/stat/nf_conntrack'],
          nodeFd,
        );
        const parsed = parseConntrackStatFile(read.stdout);
        if (!parsed.ok) throw new Error(`the lab node's counters: ${parsed.error.message}`);
        return Object.fromEntries(parsed.stats.totals);
      },
      release() {
        if (released) return;
        released = true;
        fds.forEach((fd) => closeSync(fd));
      },
    };
  }
  return undefined;
}

/**
 * Watches every process in a mount namespace other than this one's until one of them shows a
 * whole reproduce lab, and holds it. Resolves to undefined when `done` settles first.
 */
export async function watchForReproduceLab(done: Promise<unknown>): Promise<HeldLab | undefined> {
  const ownMount = safely(() => readlinkSync('/proc/self/ns/mnt'));
  let finished = false;
  void done.finally(() => (finished = true));
  while (!finished) {
    const mountNamespaces = new Map<string, number>();
    for (const pid of pids()) {
      const mnt = safely(() => readlinkSync(`/proc/${pid}/ns/mnt`));
      if (mnt && mnt !== ownMount && !mountNamespaces.has(mnt)) mountNamespaces.set(mnt, pid);
    }
    for (const pid of mountNamespaces.values()) {
      const held = holdFrom(pid);
      if (held) return held;
    }
    await sleep(5);
  }
  return undefined;
}

/** Processes in, and mounts of, any of the namespaces `inodes` (as `pid: what`). */
export function holdersOf(inodes: readonly number[]): string[] {
  const wanted = new Set(inodes.map((inode) => `net:[${inode}]`));
  const found: string[] = [];
  const mountNamespaces = new Set<string>();
  for (const pid of pids()) {
    const net = safely(() => readlinkSync(`/proc/${pid}/ns/net`));
    if (net && wanted.has(net)) found.push(`${pid}: a process in ${net}`);
    const mnt = safely(() => readlinkSync(`/proc/${pid}/ns/mnt`));
    if (!mnt || mountNamespaces.has(mnt)) continue;
    mountNamespaces.add(mnt);
    const mountinfo = safely(() => readFileSync(`/proc/${pid}/mountinfo`, 'utf8')) ?? '';
    for (const line of mountinfo.split('\n')) {
      const root = line.split(' ')[3];
      if (root && wanted.has(root)) found.push(`${pid}: a mount of ${root}`);
    }
  }
  return found;
}
