import { median } from './stats.js';

/*
 * Packet rates on a shared 2-CPU machine drift by 5-15 % over a minute (other work, the
 * host's scheduling), more than a cheap probe costs. A rate with the probe is therefore
 * compared with the runs without it taken just before and just after (its bracket), never with
 * runs minutes away: run windows without the probe alternate with rounds with it, and each
 * round's kept fraction is its rate over the mean of its two brackets. The median over rounds
 * is the figure reported.
 */

/** One run's rate and where it sits in the alternation. */
export interface PairedRun {
  /** Windows without the probe are numbered 0…rounds; the round r lies between windows r-1 and r. */
  readonly position: { readonly window: number } | { readonly round: number };
  readonly pps: number;
}

export interface KeptFraction {
  /** Per round: its rate over the mean of its two brackets; NaN when a bracket is missing. */
  readonly perRound: number[];
  /** The median of perRound (NaN ones left out). */
  readonly median: number;
}

/** The fraction of the rate without the probe that each round kept. */
export function keptFraction(
  without: readonly PairedRun[],
  rounds: readonly PairedRun[],
): KeptFraction {
  const windowPps = (window: number) =>
    without.find((run) => 'window' in run.position && run.position.window === window)?.pps;
  const perRound = rounds.map((run) => {
    if (!('round' in run.position)) return Number.NaN;
    const before = windowPps(run.position.round - 1);
    const after = windowPps(run.position.round);
    if (before === undefined || after === undefined) return Number.NaN;
    return run.pps / ((before + after) / 2);
  });
  return { perRound, median: median(perRound.filter((value) => !Number.isNaN(value))) };
}
