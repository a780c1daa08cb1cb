import { fileURLToPath } from 'node:url';
import { buildGenerator, GENERATOR_SOURCE_DIR } from '../../src/diagnose/reproduce/generators.js';
import { createExecaLabRunner } from '../../src/diagnose/reproduce/lab-runner.js';

/**
 * The lab's C programs, compiled here on first use: the race generators the doctor ships
 * (from generators/) and the test lab's own query senders and resolvers (from c/).
 */
export type GeneratorName =
  'snat-race' | 'dnat-clash' | 'dns-query' | 'resolve' | 'resolve-musl' | 'resolve-musl-dynamic';

const testSourceDir = fileURLToPath(new URL('./c/', import.meta.url));
export const defaultBuildDir = fileURLToPath(new URL('./.build/', import.meta.url));

const recipes: Record<
  GeneratorName,
  { dir: string; file: string; compiler: string; flags: string[] }
> = {
  'snat-race': {
    dir: GENERATOR_SOURCE_DIR,
    file: 'snat-race.c',
    compiler: 'gcc',
    flags: ['-pthread'],
  },
  'dnat-clash': {
    dir: GENERATOR_SOURCE_DIR,
    file: 'dnat-clash.c',
    compiler: 'gcc',
    flags: ['-pthread'],
  },
  'dns-query': { dir: testSourceDir, file: 'dns-query.c', compiler: 'gcc', flags: [] },
  resolve: { dir: testSourceDir, file: 'resolve.c', compiler: 'gcc', flags: [] },
  // Linked with musl, whose resolver sends and retries differently from glibc's.
  'resolve-musl': {
    dir: testSourceDir,
    file: 'resolve.c',
    compiler: 'musl-gcc',
    flags: ['-static'],
  },
  // Linked dynamically, as an Alpine application is: its ELF interpreter (ld-musl-*) is what
  // the agent's diagnosis recognises musl by; a static binary reads as "static".
  'resolve-musl-dynamic': {
    dir: testSourceDir,
    file: 'resolve.c',
    compiler: 'musl-gcc',
    flags: [],
  },
};

const run = createExecaLabRunner();

/** Path to the compiled generator, compiling it if it is missing or older than its source. */
export function generatorPath(
  name: GeneratorName,
  buildDir: string = defaultBuildDir,
): Promise<string> {
  return buildGenerator(run, recipes[name], buildDir, name);
}
