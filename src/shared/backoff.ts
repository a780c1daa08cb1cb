export interface BackoffPolicy {
  readonly initialMs: number;
  readonly maxMs: number;
  /** Fraction of the delay that is random, so restarts of several probes do not line up. */
  readonly jitter: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 1_000, maxMs: 30_000, jitter: 0.2 };

/**
 * Delay before restart number `attempt` (0 for the first restart after a stable run):
 * initialMs·2^attempt capped at maxMs, of which the last `jitter` fraction is random.
 */
export function backoffDelay(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const exponential = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.max(0, attempt));
  const fixedPart = exponential * (1 - policy.jitter);
  return Math.round(fixedPart + exponential * policy.jitter * random());
}
