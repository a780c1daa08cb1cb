/**
 * Debian 13's bpftrace, runnable on this Debian 12 machine without changing it: bundled with
 * its libraries and loader by scripts/bundle-bpftrace.sh (as the container image ships it)
 * into a directory of the cache, made on first use (about 64 MB of packages) and reused after.
 * The agent runs it through `--bpftrace PATH`, as a node with a newer bpftrace would.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

/** Trixie's bpftrace package version: the Dockerfile's BPFTRACE_VERSION is the same. */
export const NEWER_BPFTRACE_VERSION = '0.23.2-1';

export const NEWER_BPFTRACE_CACHE =
  process.env['NEWER_BPFTRACE_CACHE'] ?? '/var/cache/conntrack-race-observer/newer-bpftrace';

const repo = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The path of an executable that runs trixie's bpftrace. */
export async function newerBpftrace(log: (line: string) => void = () => {}): Promise<string> {
  const dir = join(NEWER_BPFTRACE_CACHE, `bundle-${NEWER_BPFTRACE_VERSION}`);
  const wrapper = join(dir, 'bin', 'bpftrace');
  if (existsSync(wrapper)) return wrapper;
  mkdirSync(NEWER_BPFTRACE_CACHE, { recursive: true });
  log(`bundling bpftrace ${NEWER_BPFTRACE_VERSION} (Debian trixie) into ${dir}`);
  await execa(join(repo, 'scripts', 'bundle-bpftrace.sh'), [dir, NEWER_BPFTRACE_VERSION], {
    stdio: ['ignore', 'ignore', 'pipe'],
    timeout: 600_000,
  });
  return wrapper;
}
