import { readFile } from 'node:fs/promises';
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

export type SystemDependencies = Pick<
  AgentDependencies,
  | 'clock'
  | 'timers'
  | 'hostFiles'
  | 'spawn'
  | 'commandPrefix'
  | 'capabilityFiles'
  | 'runCommand'
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
    readText: (path) => readFile(path, 'utf8'),
    procRoot: '/proc',
    // Beside src/ and dist/ alike.
    defaultProbesDir: fileURLToPath(new URL('../probes', import.meta.url)),
  };
}
