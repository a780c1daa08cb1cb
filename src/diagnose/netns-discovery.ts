import { waitOrAbort, type Delay } from '../shared/timers.js';
import type { Lifecycle } from '../shared/lifecycle.js';
import type { HostFiles } from './host-files.js';
import { netnsAddressesOfPid } from './netns-addresses.js';
import { listPids, netnsInodeOfPid } from './pod-processes.js';

/** A network namespace seen for the first time, with the local addresses it holds. */
export interface DiscoveredNamespace {
  readonly inode: number;
  /** A process in it, through which its files are read. */
  readonly pid: number;
  readonly addresses: readonly string[];
}

export interface NetnsDiscoveryOptions {
  readonly files: HostFiles;
  readonly procRoot: string;
  readonly delay: Delay;
  /** Time between two scans of /proc. */
  readonly intervalMs: number;
  /** Namespaces that are not pods: the host's (pid 1) is always left out, and these too. */
  readonly ignoreInodes?: () => readonly number[];
  /** Bound on the namespaces handled per scan (a node runs at most a few hundred pods). */
  readonly maxNamespaces: number;
  /** Told once per new namespace that holds an address. */
  readonly onNamespace: (namespace: DiscoveredNamespace) => void;
  readonly onError?: (error: unknown) => void;
}

/**
 * Finds the pods of a node without Kubernetes: every network namespace a process is in, found
 * by scanning /proc periodically (the link /proc/<pid>/ns/net of each process), so that each
 * new one is diagnosed before its first race. A namespace already seen costs one readlink per
 * process and scan; only a new one has its addresses read (/proc/<pid>/net/fib_trie and if_inet6).
 */
export class NetnsDiscovery implements Lifecycle {
  readonly name = 'netns-discovery';
  private seen = new Set<number>();
  private readonly stopController = new AbortController();
  private loop: Promise<void> | undefined;
  private firstScan: Promise<void> | undefined;
  private firstScanDone = false;

  constructor(private readonly options: NetnsDiscoveryOptions) {}

  start(signal?: AbortSignal): void {
    signal?.addEventListener('abort', () => void this.stop(), { once: true });
    this.firstScan ??= this.scanGuarded().finally(() => (this.firstScanDone = true));
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopController.abort();
    await this.loop;
  }

  waitingFor(): string | undefined {
    return this.firstScanDone ? undefined : 'the network namespaces of the node are being listed';
  }

  /** Resolves once the first scan is done (tests, start-up). */
  async scanned(): Promise<void> {
    await this.firstScan;
  }

  /** One pass over /proc; resolves once every new namespace has been reported. */
  async scan(): Promise<void> {
    const { files, procRoot } = this.options;
    const ignored = new Set(this.options.ignoreInodes?.() ?? []);
    const host = await netnsInodeOfPid(files, procRoot, 1);
    if (host !== undefined) ignored.add(host);
    // Only the namespaces alive at this scan are remembered: an inode number is reused once
    // its namespace is gone, and the new namespace must be found again.
    const alive = new Set<number>();
    for (const pid of await listPids(files, procRoot)) {
      if (this.stopController.signal.aborted) return;
      const inode = await netnsInodeOfPid(files, procRoot, pid);
      if (inode === undefined || ignored.has(inode) || alive.has(inode)) continue;
      if (this.seen.has(inode)) {
        alive.add(inode);
        continue;
      }
      if (alive.size >= this.options.maxNamespaces) continue;
      const addresses = await netnsAddressesOfPid(files, procRoot, pid);
      // Not remembered until read: a process that exited mid-read leaves the namespace for
      // another of its processes, or the next scan, to find.
      if (addresses === undefined) continue;
      alive.add(inode);
      // A namespace with no address sends nothing attributable: nothing to diagnose.
      if (addresses.length > 0) this.options.onNamespace({ inode, pid, addresses });
    }
    this.seen = alive;
  }

  private async scanGuarded(): Promise<void> {
    try {
      await this.scan();
    } catch (error) {
      this.options.onError?.(error);
    }
  }

  private async run(): Promise<void> {
    await this.firstScan;
    const { signal } = this.stopController;
    while (!signal.aborted) {
      await waitOrAbort(this.options.delay, this.options.intervalMs, signal);
      if (signal.aborted) return;
      await this.scanGuarded();
    }
  }
}
