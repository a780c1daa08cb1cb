// The real agent (startAgent: supervisor, decoder, pipeline, metrics, log) as its own process,
// on a recorded kernel (capability fixture 6.18-this-machine) instead of the machine's, with
// the fake bpftrace given as --bpftrace. Needs no root. Logs JSON lines on stdout, exits 0 on
// SIGTERM once stopped; anything escaping the agent ends it the way it would end main.
import { pino } from 'pino';

import { startAgent } from '../../src/agent.js';
import { parseOptions } from '../../src/config/options.js';
import type { CapabilityFiles } from '../../src/detect/capabilities.js';
import { createFileSystemCapabilityFiles } from '../../src/detect/capability-sources.js';
import { systemDependencies } from '../../src/system-dependencies.js';
import { capabilityFixtureDir, fixtureSources } from '../fixtures/capabilities/load.js';

const FIXTURE = '6.18-this-machine';
const root = `${capabilityFixtureDir}${FIXTURE}`;
const [bpftrace = ''] = process.argv.slice(2);

/** The machine's paths (/proc, /sys, …) read under the fixture instead. */
function underFixture(files: CapabilityFiles): CapabilityFiles {
  return {
    read: (path) => files.read(`${root}${path}`),
    exists: (path) => files.exists(`${root}${path}`),
  };
}

const parsed = parseOptions(
  [
    '--listen',
    '127.0.0.1:0',
    '--probe-mode',
    'tracepoint',
    '--bpftrace',
    bpftrace,
    // As the agent sees it through the capability files, which read under the fixture.
    '--tracefs',
    '/sys/kernel/tracing',
  ],
  {},
  'hostile-host',
);
if (parsed.kind !== 'run') throw new Error(`bad options: ${JSON.stringify(parsed)}`);
const agent = await startAgent(parsed.options, {
  ...(await systemDependencies()),
  capabilityFiles: underFixture(createFileSystemCapabilityFiles()),
  runCommand: (await fixtureSources(FIXTURE)).run,
  logger: pino({ level: 'info' }),
  version: 'hostile-host',
});
// `on`, as in main.ts: execa's signal-exit would re-raise SIGTERM past a `once` listener.
let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void agent.stop().then(() => process.exit(0));
});
