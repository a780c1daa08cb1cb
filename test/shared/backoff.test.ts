import { backoffDelay, DEFAULT_BACKOFF } from '../../src/shared/backoff.js';

describe('restart backoff', () => {
  it('doubles from one second up to thirty seconds at most', () => {
    const delays = [0, 1, 2, 3, 4, 5, 6, 10].map((attempt) =>
      backoffDelay(attempt, DEFAULT_BACKOFF, () => 1),
    );
    expect(delays).toEqual([1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
  });

  it('takes up to a fifth off at random so that probes do not restart in step', () => {
    expect(backoffDelay(0, DEFAULT_BACKOFF, () => 0)).toBe(800);
    expect(backoffDelay(0, DEFAULT_BACKOFF, () => 0.5)).toBe(900);
    expect(backoffDelay(10, DEFAULT_BACKOFF, () => 0)).toBe(24_000);
  });

  it('is exact without jitter', () => {
    expect(backoffDelay(2, { initialMs: 100, maxMs: 1_000, jitter: 0 }, () => 0.3)).toBe(400);
  });
});
