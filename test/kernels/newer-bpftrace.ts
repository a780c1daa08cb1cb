/**
 * Debian 13's bpftrace (0.23), runnable on this Debian 12 machine without changing it: the
 * package and every library it needs come from trixie through an apt configuration of their
 * own (AptArchive), are unpacked into a directory of the cache, and run through that
 * directory's own dynamic loader, so that the machine's glibc, LLVM and bpftrace stay as they
 * are. The agent runs it through `--bpftrace PATH`, as a node with a newer bpftrace would.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { AptArchive } from './apt-archive.js';

export const NEWER_BPFTRACE_CACHE =
  process.env['NEWER_BPFTRACE_CACHE'] ?? '/var/cache/conntrack-race-observer/newer-bpftrace';

const LIBRARY_DIR = 'usr/lib/x86_64-linux-gnu';

/**
 * The package and its dependency closure (Depends and Pre-Depends), by name. Virtual packages
 * (`<name>`) are provided by a real package of the closure already.
 */
async function dependencyClosure(archive: AptArchive, name: string): Promise<string[]> {
  const out = await archive.aptCache([
    'depends',
    '--recurse',
    '--no-recommends',
    '--no-suggests',
    '--no-conflicts',
    '--no-breaks',
    '--no-replaces',
    '--no-enhances',
    name,
  ]);
  const names = out
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith(' ') && !line.startsWith('<'));
  return [...new Set(names)].sort();
}

/**
 * The path of an executable that runs trixie's bpftrace, downloaded and unpacked on first use
 * (about 64 MB of packages) and reused after; its version in the directory's name.
 */
export async function newerBpftrace(log: (line: string) => void = () => {}): Promise<string> {
  const archive = new AptArchive(NEWER_BPFTRACE_CACHE, 'trixie', log);
  await archive.refresh();
  const bpftrace = await archive.download('bpftrace');
  const dir = join(NEWER_BPFTRACE_CACHE, `bpftrace-${bpftrace.version}`);
  const wrapper = join(dir, 'bpftrace');
  // The loader is run through a link named bpftrace: a process's name (comm, what ps and the
  // benchmarks look for) is the name of the file it executed.
  const loader = join(dir, 'loader', 'bpftrace');
  if (existsSync(wrapper) && existsSync(loader)) return wrapper;

  const partial = `${dir}.partial-${process.pid}`;
  rmSync(partial, { recursive: true, force: true });
  mkdirSync(partial, { recursive: true });
  try {
    for (const name of await dependencyClosure(archive, 'bpftrace')) {
      const pkg = name === 'bpftrace' ? bpftrace : await archive.download(name);
      await execa('dpkg-deb', ['-x', pkg.path, join(partial, 'root')]);
    }
    const root = join(dir, 'root');
    mkdirSync(join(partial, 'loader'));
    symlinkSync(
      join(root, LIBRARY_DIR, 'ld-linux-x86-64.so.2'),
      join(partial, 'loader', 'bpftrace'),
    );
    writeFileSync(
      join(partial, 'bpftrace'),
      [
        '#!/bin/sh',
        `# bpftrace ${bpftrace.version} (Debian trixie) with its own loader and libraries.`,
        `exec ${loader} --library-path ${join(root, LIBRARY_DIR)} ${join(root, 'usr/bin/bpftrace')} "$@"`,
        '',
      ].join('\n'),
    );
    chmodSync(join(partial, 'bpftrace'), 0o755);
    // Complete or absent: an interrupted run leaves only a partial directory, remade next time.
    rmSync(dir, { recursive: true, force: true });
    renameSync(partial, dir);
  } finally {
    rmSync(partial, { recursive: true, force: true });
  }
  const { stdout } = await execa(wrapper, ['--version']);
  log(`newer bpftrace: ${stdout.trim()} at ${wrapper}`);
  return wrapper;
}
