import {
  raceSummary,
  raceUntil as raceUntilCore,
  type Drive,
  type RaceUntilOptions as CoreOptions,
  type RaceUntilResult,
} from '../../../src/diagnose/reproduce/race-until.js';
import type { ConntrackStats } from '../kernel-counters.js';
import type { Lab, LabPod } from '../lab.js';
import { runDnatClash } from './dnat-clash.js';
import { runSnatRace } from './snat-race.js';

export type { Drive, RaceUntilResult };

/**
 * The doctor's race loop (src/diagnose/reproduce/race-until.ts) as tests need it: the kernel
 * counters are read with conntrack(8), one summary line per drive says how much racing a test
 * took on this machine, and a shortfall fails the test.
 */
export interface RaceUntilOptions extends Omit<CoreOptions, 'signal'> {
  /** Names the drive in its summary line; default the running jest test's name. */
  readonly label?: string;
  /** Where the one summary line per drive goes; default stdout. */
  readonly report?: (line: string) => void;
}

/** Thrown when the bound is reached first; the message says how far the drive got. */
export class RaceShortfallError extends Error {
  override readonly name = 'RaceShortfallError';
  readonly code = 'RACE_SHORTFALL';
  constructor(
    message: string,
    readonly result: RaceUntilResult,
  ) {
    super(message);
  }
}

/** The running jest test's name, when there is one: the summary line says whose race it was. */
function currentTestName(): string | undefined {
  const jestExpect = (globalThis as { expect?: { getState?: () => { currentTestName?: string } } })
    .expect;
  return jestExpect?.getState?.().currentTestName;
}

export async function raceUntil(
  readCounters: () => Promise<ConntrackStats>,
  drive: Drive,
  options: RaceUntilOptions,
): Promise<RaceUntilResult> {
  const result = await raceUntilCore(readCounters, drive, options);
  const line = raceSummary(drive, result);
  const label = options.label ?? currentTestName();
  const report = options.report ?? ((text: string) => process.stdout.write(`${text}\n`));
  report(`race ${result.reached ? 'ok' : 'SHORT'} ${line}${label ? ` [${label}]` : ''}`);
  if (!result.reached) throw new RaceShortfallError(line, result);
  return result;
}

/**
 * snat-race until the node has counted `needed` insert failures. Each batch swaps which pod's
 * sender runs on which CPU, so that a machine where one CPU always wins still has both pods lose.
 */
export function snatRaceUntil(
  lab: Lab,
  options: RaceUntilOptions & { readonly destination?: string },
): Promise<RaceUntilResult> {
  const [podA, podB] = lab.pods;
  if (!podA || !podB) throw new Error('snat-race needs two pods');
  const orders: readonly (readonly [LabPod, LabPod])[] = [
    [podA, podB],
    [podB, podA],
  ];
  return raceUntil(
    () => lab.nodeConntrackStats(),
    {
      scenario: 'snat-race',
      counter: 'insert_failed',
      counted: 'insert failures',
      defaultMaxRounds: 20_000,
      defaultFirstBatch: 100,
      // A new source port per round, none reused within a lab before 20,000 others.
      maxBatch: 5_000,
      runBatch: (rounds, batchIndex) =>
        runSnatRace(lab, {
          rounds,
          destination: options.destination,
          pods: orders[batchIndex % 2]!,
        }),
    },
    options,
  );
}

/** dnat-clash until the node has counted `needed` resolved clashes (clash_resolve). */
export function dnatClashUntil(
  lab: Lab,
  options: RaceUntilOptions & { readonly family?: 'ipv4' | 'ipv6' },
): Promise<RaceUntilResult> {
  return raceUntil(
    () => lab.nodeConntrackStats(),
    {
      scenario: 'dnat-clash',
      counter: 'clash_resolve',
      counted: 'resolved clashes',
      defaultMaxRounds: 60_000,
      defaultFirstBatch: 500,
      maxBatch: 10_000,
      runBatch: (rounds) => runDnatClash(lab, { rounds, family: options.family }),
    },
    options,
  );
}
