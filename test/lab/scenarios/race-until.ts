import { counterDelta, type ConntrackStats } from '../kernel-counters.js';
import type { Lab, LabPod } from '../lab.js';
import { runDnatClash } from './dnat-clash.js';
import { runSnatRace } from './snat-race.js';

/**
 * Races in batches until the kernel has counted what a test needs, instead of a fixed number of
 * rounds: how often a round races differs tenfold between machines (and with load), so a fixed
 * count is luck. The kernel's own counters of the node namespace decide, never the agent under
 * test; the test may add a condition of its own (`stillMissing`), e.g. that every pod lost.
 */
export interface RaceUntilOptions {
  /** How many of the scenario's kernel counter (insert_failed, clash_resolve) the test needs. */
  readonly needed: number;
  /**
   * Checked after each batch once the kernel count is reached: what the test still lacks, in
   * words for the failure message, or undefined when it has all it needs.
   */
  readonly stillMissing?: () => string | undefined | Promise<string | undefined>;
  /** Gives up after this many rounds (default per scenario). */
  readonly maxRounds?: number;
  /** Gives up once this much time has passed, checked between batches (default 60 s). */
  readonly maxMs?: number;
  /** The first batch's rounds; later batches are sized from the rate seen so far. */
  readonly firstBatch?: number;
  /** Names the drive in its summary line; default the running jest test's name. */
  readonly label?: string;
  /** Where the one summary line per drive goes; default stdout. */
  readonly report?: (line: string) => void;
  /** Milliseconds from any origin, for the time bound; default performance.now. */
  readonly nowMs?: () => number;
}

export interface RaceUntilResult {
  readonly scenario: 'snat-race' | 'dnat-clash';
  /** The kernel counter that was driven (conntrack -S name). */
  readonly counter: 'insert_failed' | 'clash_resolve';
  readonly needed: number;
  readonly rounds: number;
  readonly batches: number;
  readonly durationMs: number;
  readonly datagramsSent: number;
  readonly sendErrors: number;
  /** Node namespace conntrack counters over the whole drive, after minus before. */
  readonly kernel: ConntrackStats;
}

interface Batch {
  readonly rounds: number;
  readonly datagramsSent: number;
  readonly sendErrors: number;
}

export interface Drive {
  readonly scenario: RaceUntilResult['scenario'];
  readonly counter: RaceUntilResult['counter'];
  /** The counter in words, plural: "insert failures". */
  readonly counted: string;
  readonly defaultMaxRounds: number;
  readonly defaultFirstBatch: number;
  /** One batch must stay short enough that the time bound is checked often. */
  readonly maxBatch: number;
  readonly runBatch: (rounds: number, batchIndex: number) => Promise<Batch>;
}

const DEFAULT_MAX_MS = 60_000;

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

const number = (value: number): string => value.toLocaleString('en-US');
const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

function summary(
  drive: Drive,
  result: RaceUntilResult,
  bound: { maxRounds: number; maxMs: number },
  missing: string | undefined,
): string {
  const got = result.kernel[drive.counter] ?? 0;
  return [
    `${drive.scenario}: ${number(got)} of ${number(result.needed)} ${drive.counted}`,
    missing === undefined ? '' : ` (still missing: ${missing})`,
    ` after ${number(result.rounds)} rounds in ${result.batches} batch${result.batches === 1 ? '' : 'es'},`,
    ` ${seconds(result.durationMs)}`,
    ` (bound ${number(bound.maxRounds)} rounds or ${seconds(bound.maxMs)})`,
  ].join('');
}

/** The running jest test's name, when there is one: the summary line says whose race it was. */
function currentTestName(): string | undefined {
  const jestExpect = (globalThis as { expect?: { getState?: () => { currentTestName?: string } } })
    .expect;
  return jestExpect?.getState?.().currentTestName;
}

/**
 * The loop behind snatRaceUntil and dnatClashUntil; `readCounters` reads the node's counters.
 * Exported for its own tests.
 */
export async function raceUntil(
  readCounters: () => Promise<ConntrackStats>,
  drive: Drive,
  options: RaceUntilOptions,
): Promise<RaceUntilResult> {
  if (!Number.isInteger(options.needed) || options.needed < 1) {
    throw new Error(`${drive.scenario}: needed must be a positive integer, not ${options.needed}`);
  }
  const bound = {
    maxRounds: options.maxRounds ?? drive.defaultMaxRounds,
    maxMs: options.maxMs ?? DEFAULT_MAX_MS,
  };
  const nowMs = options.nowMs ?? (() => performance.now());
  const started = nowMs();
  const before = await readCounters();
  let rounds = 0;
  let batches = 0;
  let datagramsSent = 0;
  let sendErrors = 0;
  let kernel: ConntrackStats = {};
  let missing: string | undefined;
  let batchSize = options.firstBatch ?? drive.defaultFirstBatch;
  const result = (): RaceUntilResult => ({
    scenario: drive.scenario,
    counter: drive.counter,
    needed: options.needed,
    rounds,
    batches,
    durationMs: Math.round(nowMs() - started),
    datagramsSent,
    sendErrors,
    kernel,
  });
  while (rounds < bound.maxRounds && nowMs() - started < bound.maxMs) {
    const batch = await drive.runBatch(Math.min(batchSize, bound.maxRounds - rounds), batches);
    batches += 1;
    rounds += batch.rounds;
    datagramsSent += batch.datagramsSent;
    sendErrors += batch.sendErrors;
    kernel = counterDelta(before, await readCounters());
    const counted = kernel[drive.counter] ?? 0;
    if (counted < options.needed) {
      missing = undefined;
      // Sized from the rate so far, with a margin; doubled while nothing has been counted.
      batchSize =
        counted === 0
          ? batchSize * 2
          : Math.ceil(((options.needed - counted) * rounds * 1.5) / counted);
    } else {
      missing = (await options.stillMissing?.()) ?? undefined;
      if (missing === undefined) break;
      // The kernel count is there but the test's own condition is not: race as much again.
      batchSize = rounds;
    }
    batchSize = Math.max(drive.defaultFirstBatch, Math.min(drive.maxBatch, batchSize));
  }
  const outcome = result();
  const reached = (kernel[drive.counter] ?? 0) >= options.needed && missing === undefined;
  const line = summary(drive, outcome, bound, reached ? undefined : missing);
  const label = options.label ?? currentTestName();
  // One line per drive, so a test run shows how much racing each test took on this machine.
  const report = options.report ?? ((text: string) => process.stdout.write(`${text}\n`));
  report(`race ${reached ? 'ok' : 'SHORT'} ${line}${label ? ` [${label}]` : ''}`);
  if (!reached) throw new RaceShortfallError(line, outcome);
  return outcome;
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
export function dnatClashUntil(lab: Lab, options: RaceUntilOptions): Promise<RaceUntilResult> {
  return raceUntil(
    () => lab.nodeConntrackStats(),
    {
      scenario: 'dnat-clash',
      counter: 'clash_resolve',
      counted: 'resolved clashes',
      defaultMaxRounds: 60_000,
      defaultFirstBatch: 500,
      maxBatch: 10_000,
      runBatch: (rounds) => runDnatClash(lab, { rounds }),
    },
    options,
  );
}
