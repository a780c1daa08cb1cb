import { ReproduceError } from './errors.js';

/** Conntrack statistics of one namespace, summed over CPUs, as `conntrack -S` names them. */
export type ConntrackStats = Readonly<Record<string, number>>;

export function counterDelta(before: ConntrackStats, after: ConntrackStats): ConntrackStats {
  const delta: Record<string, number> = {};
  for (const key of Object.keys(after)) delta[key] = (after[key] ?? 0) - (before[key] ?? 0);
  return delta;
}

/**
 * Races in batches until the kernel has counted enough, instead of a fixed number of rounds:
 * how often a round races differs tenfold between machines (and with load), so a fixed count
 * is luck. The kernel's own counters of the lab's node decide; a caller may add a condition of
 * its own (`stillMissing`).
 */
export interface RaceUntilOptions {
  /** How many of the drive's counters (summed) are enough. */
  readonly needed: number;
  /** Checked once the count is reached: what is still lacking, in words, or undefined. */
  readonly stillMissing?: () => string | undefined | Promise<string | undefined>;
  /** Stops after this many rounds (default per drive). */
  readonly maxRounds?: number;
  /** Stops once this much time has passed (default 60 s); batches are sized to fit in it. */
  readonly maxMs?: number;
  /** The first batch's rounds; later batches are sized from the rate seen so far. */
  readonly firstBatch?: number;
  /** Milliseconds from any origin; default performance.now. */
  readonly nowMs?: () => number;
  /** Aborting stops between batches (the batch under way is the runner's to stop). */
  readonly signal?: AbortSignal;
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
  /** Whether the count (and the caller's own condition) was reached within the bounds. */
  readonly reached: boolean;
  /** The caller's condition still lacking at the end, in words. */
  readonly missing?: string;
  readonly bound: { readonly maxRounds: number; readonly maxMs: number };
}

export interface Batch {
  readonly rounds: number;
  readonly datagramsSent: number;
  readonly sendErrors: number;
}

export interface Drive {
  readonly scenario: RaceUntilResult['scenario'];
  readonly counter: RaceUntilResult['counter'];
  /** Further counters that count towards `needed`, e.g. insert_failed beside clash_resolve. */
  readonly alsoCounts?: readonly string[];
  /** The counter in words, plural: "insert failures". */
  readonly counted: string;
  readonly defaultMaxRounds: number;
  readonly defaultFirstBatch: number;
  /** One batch must stay short enough that the bounds are checked often. */
  readonly maxBatch: number;
  readonly runBatch: (rounds: number, batchIndex: number) => Promise<Batch>;
}

const DEFAULT_MAX_MS = 60_000;

const number = (value: number): string => value.toLocaleString('en-US');
const seconds = (ms: number): string => `${(ms / 1000).toFixed(ms < 10_000 ? 1 : 0)} s`;

export function countedBy(
  drive: Pick<Drive, 'counter' | 'alsoCounts'>,
  kernel: ConntrackStats,
): number {
  return [drive.counter, ...(drive.alsoCounts ?? [])].reduce(
    (sum, name) => sum + (kernel[name] ?? 0),
    0,
  );
}

/** One line on how far a drive got: "snat-race: 25 of 20 insert failures after 250 rounds …". */
export function raceSummary(
  drive: Pick<Drive, 'scenario' | 'counter' | 'alsoCounts' | 'counted'>,
  result: RaceUntilResult,
): string {
  return [
    `${drive.scenario}: ${number(countedBy(drive, result.kernel))} of ${number(result.needed)} ${drive.counted}`,
    result.missing === undefined ? '' : ` (still missing: ${result.missing})`,
    ` after ${number(result.rounds)} rounds in ${result.batches} batch${result.batches === 1 ? '' : 'es'},`,
    ` ${seconds(result.durationMs)}`,
    ` (bound ${number(result.bound.maxRounds)} rounds or ${seconds(result.bound.maxMs)})`,
  ].join('');
}

/** Races batch after batch until enough is counted or a bound is reached; never a shortfall error. */
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
  let reached = false;
  let batchSize = options.firstBatch ?? drive.defaultFirstBatch;
  while (rounds < bound.maxRounds && nowMs() - started < bound.maxMs) {
    if (options.signal?.aborted) {
      throw new ReproduceError('REPRODUCE_INTERRUPTED', `${drive.scenario} interrupted`);
    }
    const batch = await drive.runBatch(Math.min(batchSize, bound.maxRounds - rounds), batches);
    batches += 1;
    rounds += batch.rounds;
    datagramsSent += batch.datagramsSent;
    sendErrors += batch.sendErrors;
    kernel = counterDelta(before, await readCounters());
    const counted = countedBy(drive, kernel);
    if (counted < options.needed) {
      missing = undefined;
      // Sized from the rate so far, with a margin; doubled while nothing has been counted.
      batchSize =
        counted === 0
          ? batchSize * 2
          : Math.ceil(((options.needed - counted) * rounds * 1.5) / counted);
    } else {
      missing = (await options.stillMissing?.()) ?? undefined;
      if (missing === undefined) {
        reached = true;
        break;
      }
      // The count is there but the caller's own condition is not: race as much again.
      batchSize = rounds;
    }
    batchSize = Math.max(drive.defaultFirstBatch, Math.min(drive.maxBatch, batchSize));
    // Never plan a batch far past the time bound: at the rate so far, what still fits (+10 %).
    const elapsed = nowMs() - started;
    if (elapsed > 0 && rounds > 0) {
      const fits = Math.ceil(((bound.maxMs - elapsed) * rounds * 1.1) / elapsed);
      batchSize = Math.max(1, Math.min(batchSize, fits));
    }
  }
  return {
    scenario: drive.scenario,
    counter: drive.counter,
    needed: options.needed,
    rounds,
    batches,
    durationMs: Math.round(nowMs() - started),
    datagramsSent,
    sendErrors,
    kernel,
    reached,
    ...(reached || missing === undefined ? {} : { missing }),
    bound,
  };
}
