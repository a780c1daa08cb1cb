/**
 * Lets at most `burst` messages through per window and counts the rest, so that a probe
 * printing garbage at line rate cannot flood the log. The count of what was held back is
 * handed to the caller with the first message of the next window.
 */
export class LogRateLimiter {
  private windowStart = Number.NEGATIVE_INFINITY;
  private inWindow = 0;
  private suppressed = 0;

  constructor(
    private readonly burst: number,
    private readonly windowMs: number,
    private readonly now: () => number,
  ) {}

  /** Returns undefined when the message must be dropped, else how many were dropped before it. */
  admit(): { readonly suppressedBefore: number } | undefined {
    const now = this.now();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.inWindow = 0;
    }
    if (this.inWindow >= this.burst) {
      this.suppressed += 1;
      return undefined;
    }
    this.inWindow += 1;
    const suppressedBefore = this.suppressed;
    this.suppressed = 0;
    return { suppressedBefore };
  }
}
