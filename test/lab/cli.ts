/**
 * The lab as a command: builds the namespaces, runs one scenario, prints its figures and
 * tears everything down, also on SIGINT/SIGTERM.
 *
 *   npm run lab -- <scenario> [--rounds N] [--queries N] [--family ipv4|ipv6] [--loop [--paused]] [--interval-ms MS] [--json]
 *
 * In --loop form SIGUSR1 pauses the races and SIGUSR2 resumes them (each acknowledged with a
 * `paused`/`resumed` line), so that a watcher can compare counts while nothing moves.
 *   npm run lab -- clean
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { createLab, netnsInodeOfPid, removeStaleLabs, type Lab } from './lab.js';
import { runSnatRace, startSnatRaceLoop } from './scenarios/snat-race.js';
import { runDnatClash } from './scenarios/dnat-clash.js';
import {
  runDnsBackendStopped,
  runDnsBlocked,
  runNoListener,
  type LabFamily,
} from './scenarios/dns-queries.js';
import { runResolver } from './scenarios/resolver.js';

const scenarios = [
  'snat-race',
  'dnat-clash',
  'dns-blocked',
  'no-listener',
  'dns-backend-stopped',
  'resolver',
  'hold',
  'clean',
] as const;
type Scenario = (typeof scenarios)[number];

interface CliOptions {
  rounds?: number;
  queries: number;
  loop: boolean;
  paused: boolean;
  intervalMs: number;
  from: 'pod' | 'node';
  family: LabFamily;
  json: boolean;
}

/** How long dns-backend-stopped keeps the backend stopped after the queries. */
const STOPPED_BACKEND_HOLD_MS = 12_000;

function positiveInteger(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 1)
    throw new InvalidArgumentError('must be a positive integer');
  return parsed;
}

function print(json: boolean, record: unknown): void {
  process.stdout.write(
    json ? `${JSON.stringify(record)}\n` : `${JSON.stringify(record, null, 2)}\n`,
  );
}

/** Waits for SIGINT/SIGTERM; the handlers installed in main() do the teardown. */
function untilSignalled(): Promise<void> {
  return new Promise((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
}

async function runScenario(lab: Lab, scenario: Scenario, options: CliOptions): Promise<unknown> {
  switch (scenario) {
    case 'snat-race':
      if (options.loop) {
        const loop = await startSnatRaceLoop(lab, {
          intervalMs: options.intervalMs,
          onRound: (round, sourcePort) => {
            if (options.json) print(true, { event: 'round', round, sourcePort });
          },
        });
        const pause = (): void => {
          loop.pause();
          print(options.json, { event: 'paused' });
        };
        const resume = (): void => {
          loop.resume();
          print(options.json, { event: 'resumed' });
        };
        process.on('SIGUSR1', pause);
        process.on('SIGUSR2', resume);
        if (options.paused) pause();
        await untilSignalled();
        process.off('SIGUSR1', pause);
        process.off('SIGUSR2', resume);
        return loop.stop();
      }
      return runSnatRace(lab, { rounds: options.rounds ?? 1000 });
    case 'dnat-clash':
      return runDnatClash(lab, { rounds: options.rounds ?? 20_000, family: options.family });
    case 'dns-blocked':
      return runDnsBlocked(lab, {
        queries: options.queries,
        from: options.from,
        family: options.family,
      });
    case 'no-listener':
      return runNoListener(lab, { queries: options.queries, family: options.family });
    case 'dns-backend-stopped': {
      const stopped = await runDnsBackendStopped(lab, {
        queriesPerRound: options.queries,
        atLeast: 1,
      });
      // An agent reports a query unanswered up to 11 s after it was sent; a late answer
      // before that would count it answered.
      await new Promise((resolve) => setTimeout(resolve, STOPPED_BACKEND_HOLD_MS));
      await stopped.resume();
      return {
        scenario: stopped.scenario,
        backend: stopped.backend,
        queriesSent: stopped.queriesSent,
        answered: stopped.answered,
        receivedByStopped: stopped.receivedByStopped,
        heldStoppedMs: STOPPED_BACKEND_HOLD_MS,
        kernel: stopped.kernel,
      };
    }
    case 'resolver':
      return runResolver(lab);
    case 'hold':
      await untilSignalled();
      return { scenario: 'hold' };
    case 'clean':
      throw new Error('clean needs no lab');
  }
}

async function main(argv: readonly string[]): Promise<void> {
  const program = new Command()
    .name('lab')
    .description(
      'Network-namespace lab: real conntrack races and DNS drops, measured by the kernel.',
    )
    .addArgument(new Command().createArgument('<scenario>', 'what to run').choices(scenarios))
    .option('--rounds <n>', 'race rounds (snat-race: 1000, dnat-clash: 20000)', positiveInteger)
    .option(
      '--queries <n>',
      'DNS queries (dns-blocked, no-listener; dns-backend-stopped: per round)',
      positiveInteger,
      20,
    )
    .option('--loop', 'snat-race: one round every --interval-ms until SIGINT/SIGTERM', false)
    .option('--paused', 'snat-race --loop: start paused until SIGUSR2', false)
    .option('--interval-ms <ms>', 'pause between loop rounds', positiveInteger, 750)
    .addOption(
      new Option('--from <side>', 'dns-blocked: sender').choices(['pod', 'node']).default('pod'),
    )
    .addOption(
      new Option(
        '--family <family>',
        'dns-blocked, no-listener, dnat-clash: address family of the queries (ipv6 makes the lab dual-stack)',
      )
        .choices(['ipv4', 'ipv6'])
        .default('ipv4'),
    )
    .option('--json', 'one JSON object per line', false)
    .parse(argv);
  const scenario = program.args[0] as Scenario;
  const options = program.opts<CliOptions>();

  if (scenario === 'clean') {
    print(options.json, { event: 'cleaned', removed: await removeStaleLabs() });
    return;
  }

  await removeStaleLabs();
  // Only the DNS-drop scenarios and dnat-clash take a family; the others run IPv4 whatever it says.
  const lab = await createLab({ dualStack: options.family === 'ipv6' });
  let exiting = false;
  const teardown = (signal: NodeJS.Signals): void => {
    if (exiting) return;
    exiting = true;
    // Scenarios that wait for a signal finish themselves; this covers the others.
    if (scenario !== 'hold' && !(scenario === 'snat-race' && options.loop)) {
      void lab.destroy().finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
    }
  };
  process.on('SIGINT', teardown);
  process.on('SIGTERM', teardown);
  try {
    // First line: what an agent needs to watch this lab's node.
    print(true, {
      event: 'lab-ready',
      labId: lab.id,
      nodeNetns: lab.node.netns,
      nodeNetnsPid: lab.node.pid,
      nodeNetnsInode: netnsInodeOfPid(lab.node.pid),
      pods: lab.pods,
      upstream: lab.upstream,
    });
    const result = await runScenario(lab, scenario, options);
    print(options.json, result);
  } finally {
    await lab.destroy();
  }
}

main(process.argv).catch((error: unknown) => {
  process.stderr.write(`lab: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
});
