import { execa } from 'execa';
import { newerBpftrace } from '../test/kernels/newer-bpftrace.js';

/**
 * Debian 13's bpftrace beside the machine's (Debian 12's 0.17): the storm benchmarks run the
 * agent with both, through `--bpftrace PATH`, as a node with a newer bpftrace would.
 */
export interface NewerBpftrace {
  /** The executable (test/kernels/newer-bpftrace.ts: its own loader and libraries). */
  readonly path: string;
  /** What its `--version` prints, e.g. `bpftrace v0.23.2`. */
  readonly version: string;
}

/**
 * Found, or downloaded and unpacked on first use (cached under /var/cache after): resolved once
 * per benchmark run, before any lab exists, so that a download never falls inside a measurement.
 */
export async function resolveNewerBpftrace(
  log: (line: string) => void = () => {},
): Promise<NewerBpftrace> {
  const path = await newerBpftrace(log);
  const { stdout } = await execa(path, ['--version']);
  return { path, version: stdout.trim() };
}
