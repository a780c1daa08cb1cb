import { mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ReproduceError } from './errors.js';
import type { LabRunner } from './lab-runner.js';

/** The C race generators: a busy-wait on a shared start time is beyond Node's timers. */
export type RaceGeneratorName = 'snat-race' | 'dnat-clash';
export const RACE_GENERATORS: readonly RaceGeneratorName[] = ['snat-race', 'dnat-clash'];

/** Where the image installs them (the Dockerfile's `generators` stage). */
export const INSTALLED_GENERATOR_DIR = '/usr/local/lib/conntrack-race-observer';
/** Their sources in a checkout: `generators/` beside src/ and dist/ alike. */
export const GENERATOR_SOURCE_DIR = fileURLToPath(new URL('../../../generators/', import.meta.url));

export interface GeneratorLocations {
  readonly installedDir: string;
  readonly sourceDir: string;
  /** Where a checkout's generators are compiled to on first use. */
  readonly cacheDir: string;
}

export interface LocatedGenerators {
  readonly origin: 'installed' | 'built';
  readonly dir: string;
  readonly paths: Readonly<Record<RaceGeneratorName, string>>;
}

function mtimeOf(path: string): number | undefined {
  try {
    return statSync(path).mtimeMs;
  } catch {
    return undefined;
  }
}

/** Builds started by this process: each compiles to a temporary file of its own. */
let partialSequence = 0;

/**
 * Compiles one generator from `sourceDir` into `outDir` unless it is there and newer than its
 * sources; returns its path. Others (the test lab) compile their own programs with it too.
 */
export async function buildGenerator(
  run: LabRunner,
  source: { dir: string; file: string; compiler?: string; flags?: readonly string[] },
  outDir: string,
  name: string,
): Promise<string> {
  const sourcePath = join(source.dir, source.file);
  const binary = join(outDir, name);
  const newestSource = Math.max(
    mtimeOf(sourcePath) ?? 0,
    mtimeOf(join(GENERATOR_SOURCE_DIR, 'lab-common.h')) ?? 0,
  );
  const built = mtimeOf(binary);
  if (built !== undefined && built >= newestSource) return binary;
  mkdirSync(outDir, { recursive: true });
  // Compiled to a private name, then renamed: a concurrent run never executes half a file.
  // The sequence number keeps two builds of one program in one process apart (each renamed
  // the other's half-linked file, left without its execute bit).
  partialSequence += 1;
  const partial = `${binary}.${process.pid}.${partialSequence}.tmp`;
  const compiler = source.compiler ?? 'gcc';
  const outcome = await run(
    compiler,
    [
      '-O2',
      '-Wall',
      '-Wextra',
      '-I',
      GENERATOR_SOURCE_DIR,
      ...(source.flags ?? []),
      '-o',
      partial,
      sourcePath,
    ],
    { timeoutMs: 120_000 },
  );
  if (outcome.exitCode !== 0) {
    throw new ReproduceError(
      'REPRODUCE_NO_GENERATORS',
      `could not compile ${sourcePath} with ${compiler}: ${outcome.failure ?? outcome.stderr.trim()}`,
    );
  }
  renameSync(partial, binary);
  return binary;
}

/**
 * The race generators: from a checkout (its `generators/` sources exist) compiled into the
 * cache dir with gcc; else the ones the image installed.
 */
export async function locateRaceGenerators(
  run: LabRunner,
  locations: GeneratorLocations,
): Promise<LocatedGenerators> {
  const installed = (name: RaceGeneratorName): string => join(locations.installedDir, name);
  const hasSources = RACE_GENERATORS.every(
    (name) => mtimeOf(join(locations.sourceDir, `${name}.c`)) !== undefined,
  );
  if (hasSources) {
    try {
      const paths = {} as Record<RaceGeneratorName, string>;
      for (const name of RACE_GENERATORS) {
        paths[name] = await buildGenerator(
          run,
          { dir: locations.sourceDir, file: `${name}.c`, flags: ['-pthread'] },
          locations.cacheDir,
          name,
        );
      }
      return { origin: 'built', dir: locations.cacheDir, paths };
    } catch (error) {
      if (!RACE_GENERATORS.every((name) => mtimeOf(installed(name)) !== undefined)) throw error;
    }
  }
  if (RACE_GENERATORS.every((name) => mtimeOf(installed(name)) !== undefined)) {
    return {
      origin: 'installed',
      dir: locations.installedDir,
      paths: { 'snat-race': installed('snat-race'), 'dnat-clash': installed('dnat-clash') },
    };
  }
  throw new ReproduceError(
    'REPRODUCE_NO_GENERATORS',
    `no race generators in ${locations.installedDir} and no sources in ${locations.sourceDir} to build them from`,
  );
}
