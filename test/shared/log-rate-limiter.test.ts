import { LogRateLimiter } from '../../src/shared/log-rate-limiter.js';

describe('log rate limiter', () => {
  it('admits a burst per window, holds back the rest, and reports how many with the next admitted message', () => {
    let now = 0;
    const limiter = new LogRateLimiter(2, 1_000, () => now);
    expect(limiter.admit()).toEqual({ suppressedBefore: 0 });
    expect(limiter.admit()).toEqual({ suppressedBefore: 0 });
    expect(limiter.admit()).toBeUndefined();
    expect(limiter.admit()).toBeUndefined();
    now = 999;
    expect(limiter.admit()).toBeUndefined();
    now = 1_000;
    expect(limiter.admit()).toEqual({ suppressedBefore: 3 });
    expect(limiter.admit()).toEqual({ suppressedBefore: 0 });
  });
});
