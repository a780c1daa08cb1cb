import { canonicalIp } from '../shared/canonical-ip.js';
import type { Clock } from '../shared/clock.js';
import type { HostFiles } from './host-files.js';
import { listPids, netnsInodeOfPid } from './pod-processes.js';

/**
 * The local IPv4 addresses of `/proc/<pid>/net/fib_trie`: the entries of the Local table
 * marked `/32 host LOCAL`. The file shows the namespace of <pid> without entering it.
 */
export function localAddressesOfFibTrie(text: string): string[] {
  const addresses = new Set<string>();
  let last: string | undefined;
  for (const line of text.split('\n')) {
    const leaf = /\|--\s+(\d+\.\d+\.\d+\.\d+)\s*$/.exec(line);
    if (leaf?.[1]) {
      last = leaf[1];
      continue;
    }
    if (last && /\/32 host LOCAL/.test(line)) addresses.add(last);
  }
  return [...addresses].filter((address) => !address.startsWith('127.'));
}

/** if_inet6 scopes (include/net/ipv6.h IFA_*): link-local and host addresses name no pod. */
const IFA_HOST = 0x10;
const IFA_LINK = 0x20;

/**
 * The global IPv6 addresses of `/proc/<pid>/net/if_inet6` (one line per address: 32 hex
 * digits, ifindex, prefix length, scope, flags, device), in canonical text form. Loopback and
 * link-local addresses are left out: every namespace has the same ones.
 */
export function localAddressesOfIfInet6(text: string): string[] {
  const addresses = new Set<string>();
  for (const line of text.split('\n')) {
    const [hex, , , scopeHex] = line.trim().split(/\s+/);
    if (!hex || !/^[0-9a-f]{32}$/i.test(hex) || !scopeHex) continue;
    const scope = Number.parseInt(scopeHex, 16);
    if (scope === IFA_HOST || scope === IFA_LINK) continue;
    addresses.add(canonicalIp(hex.replace(/(.{4})(?!$)/g, '$1:')));
  }
  return [...addresses];
}

/**
 * The addresses of both families of the network namespace <pid> is in, read from /proc without
 * entering it; undefined when the process is gone (its fib_trie unreadable). A kernel without
 * IPv6 has no if_inet6: IPv4 only then.
 */
export async function netnsAddressesOfPid(
  files: HostFiles,
  procRoot: string,
  pid: number,
): Promise<string[] | undefined> {
  const trie = await files.readText(`${procRoot}/${pid}/net/fib_trie`, 4 * 1024 * 1024);
  if (trie === undefined) return undefined;
  const inet6 = await files.readText(`${procRoot}/${pid}/net/if_inet6`, 1024 * 1024);
  return [...localAddressesOfFibTrie(trie), ...(inet6 ? localAddressesOfIfInet6(inet6) : [])];
}

export interface NetnsAddressMapOptions {
  readonly files: HostFiles;
  readonly procRoot: string;
  readonly clock: Clock;
  /** How long one scan of every namespace is reused. */
  readonly maxAgeMs: number;
}

/**
 * IP (either family, canonical) → the network namespace holding it, for every namespace a process is in. Standalone, this
 * is how an event's client address leads to its pod's processes. The host's own namespace is
 * left out: its addresses belong to no pod. Rebuilt at most once per `maxAgeMs`.
 */
export class NetnsAddressMap {
  private byIp = new Map<string, number>();
  private builtAtMs = Number.NEGATIVE_INFINITY;
  private building: Promise<void> | undefined;

  constructor(private readonly options: NetnsAddressMapOptions) {}

  async namespaceOf(written: string): Promise<number | undefined> {
    const ip = canonicalIp(written);
    if (
      this.options.clock.nowMs() - this.builtAtMs >= this.options.maxAgeMs ||
      !this.byIp.has(ip)
    ) {
      await this.refresh();
    }
    return this.byIp.get(ip);
  }

  private refresh(): Promise<void> {
    // A miss right after a scan does not scan again: new pods wait for the next period.
    if (this.options.clock.nowMs() - this.builtAtMs < Math.min(this.options.maxAgeMs, 5_000)) {
      return Promise.resolve();
    }
    return (this.building ??= this.build().finally(() => (this.building = undefined)));
  }

  private async build(): Promise<void> {
    const { files, procRoot } = this.options;
    const hostInode = await netnsInodeOfPid(files, procRoot, 1);
    const seen = new Set<number>();
    const byIp = new Map<string, number>();
    for (const pid of await listPids(files, procRoot)) {
      const inode = await netnsInodeOfPid(files, procRoot, pid);
      if (inode === undefined || inode === hostInode || seen.has(inode)) continue;
      seen.add(inode);
      const addresses = await netnsAddressesOfPid(files, procRoot, pid);
      for (const address of addresses ?? []) byIp.set(address, inode);
    }
    this.byIp = byIp;
    this.builtAtMs = this.options.clock.nowMs();
  }
}
