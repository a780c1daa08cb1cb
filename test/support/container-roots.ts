/**
 * Container root file systems made cheaply from this machine's own libraries: a musl root
 * (Alpine's layout, `/lib/ld-musl-x86_64.so.1`) and a glibc root (Debian's multiarch layout),
 * each with its own etc/resolv.conf. Real library files, so that what the diagnosis reads is
 * what it would read in an image.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const MUSL_LIBRARY = '/usr/lib/x86_64-linux-musl/libc.so';
export const GLIBC_LIBRARY = '/lib/x86_64-linux-gnu/libc.so.6';
export const GLIBC_LOADER = '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2';

export type RootKind = 'musl' | 'glibc';

export interface ContainerRoot {
  readonly path: string;
  remove(): void;
}

export function makeContainerRoot(
  kind: RootKind,
  resolvConf: string,
  parent?: string,
): ContainerRoot {
  const path = mkdtempSync(join(parent ?? tmpdir(), `root-${kind}-`));
  mkdirSync(join(path, 'etc'), { recursive: true });
  mkdirSync(join(path, 'bin'), { recursive: true });
  writeFileSync(join(path, 'etc/resolv.conf'), resolvConf);
  if (kind === 'musl') {
    mkdirSync(join(path, 'lib'), { recursive: true });
    copyFileSync(MUSL_LIBRARY, join(path, 'lib/ld-musl-x86_64.so.1'));
    // Alpine's second name for the same file.
    symlinkSync('ld-musl-x86_64.so.1', join(path, 'lib/libc.musl-x86_64.so.1'));
  } else {
    mkdirSync(join(path, 'lib/x86_64-linux-gnu'), { recursive: true });
    mkdirSync(join(path, 'lib64'), { recursive: true });
    copyFileSync(GLIBC_LIBRARY, join(path, 'lib/x86_64-linux-gnu/libc.so.6'));
    copyFileSync(GLIBC_LOADER, join(path, 'lib/x86_64-linux-gnu/ld-linux-x86-64.so.2'));
    // An absolute link, as Debian ships it: it must be followed inside the root.
    symlinkSync(
      '/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2',
      join(path, 'lib64/ld-linux-x86-64.so.2'),
    );
  }
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export interface FakeProcess {
  readonly pid: number;
  readonly root: string;
  readonly netnsInode: number;
  readonly cgroup?: string;
  readonly comm?: string;
  /** Path of the executable inside the root, if any. */
  readonly exe?: string;
  /** Local addresses of its network namespace: /proc/<pid>/net/fib_trie and if_inet6. */
  readonly addresses?: readonly string[];
}

/** The Local table of /proc/<pid>/net/fib_trie holding these addresses (and loopback). */
export function fibTrieOf(addresses: readonly string[]): string {
  const leaves = ['127.0.0.1', ...addresses].map(
    (address) => `        |-- ${address}\n           /32 host LOCAL\n`,
  );
  return `Main:\n  +-- 0.0.0.0/0 3 0 5\nLocal:\n  +-- 0.0.0.0/0 3 0 5\n${leaves.join('')}`;
}

/** /proc/<pid>/net/if_inet6 holding these global IPv6 addresses, with loopback and link-local. */
export function ifInet6Of(addresses: readonly string[]): string {
  const hexOf = (address: string): string => {
    const [head = '', tail = ''] = address.split('::');
    const groups = (part: string): string[] => (part === '' ? [] : part.split(':'));
    const missing = 8 - groups(head).length - groups(tail).length;
    return [...groups(head), ...Array<string>(missing).fill('0'), ...groups(tail)]
      .map((group) => group.padStart(4, '0'))
      .join('');
  };
  const line = (hex: string, scope: string, device: string): string =>
    `${hex} 02 40 ${scope} 80 ${device.padStart(8)}\n`;
  return [
    line('00000000000000000000000000000001', '10', 'lo'),
    line('fe800000000000000000000000000002', '20', 'eth0'),
    ...addresses.map((address) => line(hexOf(address), '00', 'eth0')),
  ].join('');
}

/** A /proc tree with the files the diagnosis reads, its links pointing at the given roots. */
export function makeProcTree(
  processes: readonly FakeProcess[],
  hostNetnsInode = 4026531840,
): string {
  const proc = mkdtempSync(join(tmpdir(), 'proc-'));
  const all: FakeProcess[] = [
    { pid: 1, root: '/', netnsInode: hostNetnsInode, comm: 'init' },
    ...processes,
  ];
  for (const process of all) {
    const dir = join(proc, String(process.pid));
    mkdirSync(join(dir, 'ns'), { recursive: true });
    mkdirSync(join(dir, 'net'), { recursive: true });
    symlinkSync(process.root, join(dir, 'root'));
    symlinkSync(`net:[${process.netnsInode}]`, join(dir, 'ns/net'));
    writeFileSync(join(dir, 'comm'), `${process.comm ?? 'app'}\n`);
    writeFileSync(join(dir, 'cgroup'), process.cgroup ?? '0::/\n');
    if (process.exe) symlinkSync(join(process.root, process.exe), join(dir, 'exe'));
    if (process.addresses) {
      const v6 = process.addresses.filter((address) => address.includes(':'));
      const v4 = process.addresses.filter((address) => !address.includes(':'));
      writeFileSync(join(dir, 'net/fib_trie'), fibTrieOf(v4));
      writeFileSync(join(dir, 'net/if_inet6'), ifInet6Of(v6));
    }
  }
  return proc;
}
