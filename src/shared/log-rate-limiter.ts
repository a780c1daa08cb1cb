import { TokenBucket } from './token-bucket.js';

/**
 * Lets `burst` messages through at once and `burst` per window on average after that, and
 * counts the rest, so that a probe printing garbage at line rate cannot flood the log. The
 * count of what was held back is handed to the caller with the next message let through.
 */
export class LogRateLimiter {
  private readonly bucket: TokenBucket;
  private suppressed = 0;

  constructor(burst: number, windowMs: number, now: () => number) {
    this.bucket = new TokenBucket(now, burst, burst / (windowMs / 1000));
  }

  /** Returns undefined when the message must be dropped, else how many were dropped before it. */
  admit(): { readonly suppressedBefore: number } | undefined {
    if (!this.bucket.tryTake()) {
      this.suppressed += 1;
      return undefined;
    }
    const suppressedBefore = this.suppressed;
    this.suppressed = 0;
    return { suppressedBefore };
  }
}
