import { LogRateLimiter } from '../../src/shared/log-rate-limiter.js';

describe('log rate limiter', () => {
  it('admits a burst, holds back the rest, and reports how many with the next admitted message', () => {
    let now = 0;
    const limiter = new LogRateLimiter(2, 1_000, () => now);
    expect(limiter.admit()).toEqual({ suppressedBefore: 0 });
    expect(limiter.admit()).toEqual({ suppressedBefore: 0 });
    expect(limiter.admit()).toBeUndefined();
    expect(limiter.admit()).toBeUndefined();
    // 2 per second: the next message is let through half a second later, not before.
    now = 499;
    expect(limiter.admit()).toBeUndefined();
    now = 500;
    expect(limiter.admit()).toEqual({ suppressedBefore: 3 });
    expect(limiter.admit()).toBeUndefined();
    // A quiet window refills the whole burst, never more.
    now = 5_000;
    expect(limiter.admit()).toEqual({ suppressedBefore: 1 });
    expect(limiter.admit()).toEqual({ suppressedBefore: 0 });
    expect(limiter.admit()).toBeUndefined();
  });
});
