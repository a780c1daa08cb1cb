/**
 * A token bucket on an injected clock (milliseconds): `capacity` tokens, refilled at `perSecond`.
 * The one rate limiter of the agent: Event writes and rate-limited log lines use it.
 */
export class TokenBucket {
  private tokens: number;
  private updatedMs: number;

  constructor(
    private readonly nowMs: () => number,
    readonly capacity: number,
    readonly perSecond: number,
  ) {
    this.tokens = capacity;
    this.updatedMs = nowMs();
  }

  tryTake(): boolean {
    this.refill();
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Milliseconds until a token is available (0 if one is). */
  msUntilToken(): number {
    this.refill();
    if (this.tokens >= 1) return 0;
    return Math.ceil(((1 - this.tokens) / this.perSecond) * 1000);
  }

  /** Full again: the bucket can be forgotten without changing behaviour. */
  isFull(): boolean {
    this.refill();
    return this.tokens >= this.capacity;
  }

  private refill(): void {
    const now = this.nowMs();
    const elapsedMs = Math.max(0, now - this.updatedMs);
    this.updatedMs = now;
    this.tokens = Math.min(this.capacity, this.tokens + (elapsedMs / 1000) * this.perSecond);
  }
}
