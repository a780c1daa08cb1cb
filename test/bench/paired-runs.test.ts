import { keptFraction, type PairedRun } from '../../bench/paired-runs.js';

const without = (window: number, pps: number): PairedRun => ({ position: { window }, pps });
const round = (r: number, pps: number): PairedRun => ({ position: { round: r }, pps });

describe('kept fraction from bracketed runs', () => {
  it('compares each round with the windows just before and after it', () => {
    // The machine slows down over the run: the rate without the probe drifts from 120 to 80.
    const kept = keptFraction(
      [without(0, 120), without(1, 100), without(2, 80)],
      [round(1, 99), round(2, 81)],
    );
    expect(kept.perRound).toEqual([99 / 110, 81 / 90]);
    expect(kept.median).toBeCloseTo((0.9 + 0.9) / 2, 10);
  });

  it('leaves out a round whose bracket is missing, and says so per round', () => {
    const kept = keptFraction([without(0, 100), without(1, 100)], [round(1, 95), round(2, 50)]);
    expect(kept.perRound[0]).toBeCloseTo(0.95, 10);
    expect(kept.perRound[1]).toBeNaN();
    expect(kept.median).toBeCloseTo(0.95, 10);
  });

  it('has no median without any complete round', () => {
    expect(keptFraction([], [round(1, 95)]).median).toBeNaN();
  });
});
