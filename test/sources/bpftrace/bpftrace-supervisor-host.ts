// An agent reduced to its probe supervisor, run as its own process so that a test can
// SIGKILL it and see what becomes of its bpftrace. Prints each probe pid once attached.
import { pino } from 'pino';
import { Registry } from 'prom-client';

import { BpftraceSupervisor } from '../../../src/sources/bpftrace/bpftrace-supervisor.js';
import { createLineDecoder } from '../../../src/decode/decode.js';
import {
  createExecaProbeSpawner,
  parentDeathPrefix,
} from '../../../src/sources/bpftrace/probe-process.js';

const [script = ''] = process.argv.slice(2);
const supervisor = new BpftraceSupervisor({
  probes: [{ name: 'host-probe', script, args: [] }],
  decoderFor: (probe) => createLineDecoder(probe.name, String),
  onEvent: () => {},
  spawn: createExecaProbeSpawner(),
  registry: new Registry(),
  logger: pino({ level: 'silent' }),
  commandPrefix: await parentDeathPrefix(),
});
supervisor.start();
const report = setInterval(() => {
  if (!supervisor.isReady()) return;
  process.stdout.write(`${supervisor.status()[0]?.pid ?? ''}\n`);
  clearInterval(report);
}, 50);
