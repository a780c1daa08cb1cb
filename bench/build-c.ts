import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

export type BenchProgram = 'udp-blast' | 'udp-sink' | 'getppid-loop' | 'dns-load';

export interface BenchPrograms {
  readonly dir: string;
  path(name: BenchProgram): string;
  remove(): void;
}

const sourceDir = fileURLToPath(new URL('./c/', import.meta.url));

/** Compiles the benchmark's C programs into a fresh temp dir; remove() deletes it. */
export async function buildBenchPrograms(): Promise<BenchPrograms> {
  const dir = mkdtempSync(join(tmpdir(), 'cro-bench-'));
  const names: BenchProgram[] = ['udp-blast', 'udp-sink', 'getppid-loop', 'dns-load'];
  try {
    for (const name of names) {
      await execa('gcc', [
        '-O2',
        '-Wall',
        '-Wextra',
        '-o',
        join(dir, name),
        join(sourceDir, `${name}.c`),
      ]);
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    dir,
    path: (name) => join(dir, name),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
