/**
 * The seam for waiting: a part that waits (a restart's backoff, an informer's retry) takes a `Delay` rather
 * than calling `setTimeout`, so that its tests drive time with a manual delay instead of real
 * timers. Reading the time is the other seam, `Clock` in clock.ts.
 */
import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Waits `ms` milliseconds. Settles early (resolving or rejecting, callers accept either) when
 * `signal` aborts, so that a waiting loop can be woken or stopped.
 */
export type Delay = (ms: number, signal?: AbortSignal) => Promise<void>;

/** A Delay on real timers; unref'd so that a pending wait never holds the process open. */
export const realDelay: Delay = async (ms, signal) => {
  await sleep(ms, undefined, { signal, ref: false });
};

/** Waits, treating an abort as the end of the wait rather than an error. */
export async function waitOrAbort(delay: Delay, ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return;
  try {
    await delay(ms, signal);
  } catch {
    // An aborted wait is the wake-up itself, not a failure.
  }
}
