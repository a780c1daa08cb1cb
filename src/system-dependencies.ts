import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AgentDependencies } from './agent-dependencies.js';
import { systemClock } from './shared/clock.js';
import { unrefTimers } from './shared/timers.js';
import { createHostFiles } from './diagnose/host-files.js';
import {
  createExecaCommandRunner,
  createFileSystemCapabilityFiles,
} from './detect/capability-sources.js';
import { createExecaProbeSpawner, parentDeathPrefix } from './sources/bpftrace/probe-process.js';
import { buildGenerator, INSTALLED_GENERATOR_DIR } from './diagnose/reproduce/generators.js';
import { createExecaLabRunner } from './diagnose/reproduce/lab-runner.js';

export type SystemDependencies = Pick<
  AgentDependencies,
  | 'clock'
  | 'timers'
  | 'hostFiles'
  | 'spawn'
  | 'commandPrefix'
  | 'capabilityFiles'
  | 'runCommand'
  | 'pageOutProgram'
  | 'readText'
  | 'procRoot'
  | 'defaultProbesDir'
>;

/** The real machine: processes, files, clocks and the packaged probes. */
export async function systemDependencies(): Promise<SystemDependencies> {
  return {
    clock: systemClock,
    timers: unrefTimers,
    hostFiles: createHostFiles(),
    spawn: createExecaProbeSpawner(),
    commandPrefix: await parentDeathPrefix(),
    capabilityFiles: createFileSystemCapabilityFiles(),
    runCommand: createExecaCommandRunner(),
    pageOutProgram: once(locatePageOutProgram),
    readText: (path) => readFile(path, 'utf8'),
    procRoot: '/proc',
    // Beside src/ and dist/ alike.
    defaultProbesDir: fileURLToPath(new URL('../probes', import.meta.url)),
  };
}

function once<T>(make: () => Promise<T>): () => Promise<T> {
  let made: Promise<T> | undefined;
  return () => (made ??= make());
}

/**
 * native/page-out.c: a checkout (its sources beside src/ and dist/) compiles it with gcc into the
 * cache on first use, as it does the race generators; the image installs it beside them.
 */
async function locatePageOutProgram(): Promise<string> {
  const installed = join(INSTALLED_GENERATOR_DIR, 'page-out');
  const sourceDir = fileURLToPath(new URL('../native/', import.meta.url));
  if (!existsSync(join(sourceDir, 'page-out.c'))) {
    if (existsSync(installed)) return installed;
    throw new Error(`neither ${installed} nor ${sourceDir}page-out.c to build it from`);
  }
  const cacheHome = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  try {
    return await buildGenerator(
      createExecaLabRunner(),
      { dir: sourceDir, file: 'page-out.c' },
      join(cacheHome, 'conntrack-race-observer'),
      'page-out',
    );
  } catch (error) {
    if (existsSync(installed)) return installed;
    throw error;
  }
}
