/**
 * The narrow seams the Kubernetes part needs from its surroundings, declared here so that each
 * module is tested with real objects in place of timers and clocks.
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
